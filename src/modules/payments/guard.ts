// The guard's accessor and helpers live beside the gateways they protect; re-exported here for the payments modules.
export { paymentGuard, withAdmission, lockedError, lockedFailure, GuardLease, unlessPaymentsStopped, type Admit, type Admitted, type Refused } from "../../gateways/guard";
