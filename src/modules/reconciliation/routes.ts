import { router } from "../../http/openapi";

export const reconciliationRoutes = router();
export const reportRoutes = router();
