import { router } from "../../http/openapi";

export const refundRoutes = router();
