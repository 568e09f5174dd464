import { router } from "../../http/openapi";

export const analyticsRoutes = router();
export const weeklyRevenueRoutes = router();
