import { router } from "../../http/openapi";

export const configRoutes = router();
export const featureRoutes = router();
export const notificationAdminRoutes = router();
export const exchangeRateRoutes = router();
