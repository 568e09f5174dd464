import { router } from "../../http/openapi";

export const stripeWebhookRoutes = router();
export const webhookAdminRoutes = router();
