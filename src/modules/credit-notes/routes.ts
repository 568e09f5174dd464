import { router } from "../../http/openapi";
export const creditNoteRoutes = router();
