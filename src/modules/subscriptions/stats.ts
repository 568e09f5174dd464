import { router } from "../../http/openapi";

// Subscription monitoring routes (runbook "Subscription Monitoring"); mounted before /{id}.
export const subscriptionStatsRoutes = router();
