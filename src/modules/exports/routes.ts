import { router } from "../../http/openapi";

export const auditExportRoutes = router();
export const emergencyExportRoutes = router();
export const backupRoutes = router();
