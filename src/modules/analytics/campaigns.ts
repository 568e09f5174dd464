import { router } from "../../http/openapi";

export const campaignRoutes = router();
