import { router } from "../../http/openapi";

// Invoice operations: retry-failed, send-reminders (under /api/v1/invoices) and archive (under /admin/invoices).
export const invoiceOpsRoutes = router();
export const invoiceAdminRoutes = router();
