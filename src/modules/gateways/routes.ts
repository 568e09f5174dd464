import { router } from "../../http/openapi";

// Gateway status, test, metrics (under /api/v1/gateways) and failover (under /admin/gateways).
export const gatewayRoutes = router();
export const gatewayAdminRoutes = router();
