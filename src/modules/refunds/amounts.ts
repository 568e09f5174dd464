import { currencyExponent, formatMinor } from "../../domain/money";

/** Major-unit string of a stored amount; rows without a real currency (XXX) show the bare minor amount. */
export const amountText = (minor: number, currency: string) => (currencyExponent(currency) === undefined ? String(minor) : formatMinor(minor, currency));
