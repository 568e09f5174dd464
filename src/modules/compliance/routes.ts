import { router } from "../../http/openapi";

export const complianceRoutes = router();
export const securityRoutes = router();
export const cardDataAuditRoutes = router();
