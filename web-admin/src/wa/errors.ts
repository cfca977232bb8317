// What Meta's WhatsApp error codes mean, in words an operator can act on. Codes from Meta's
// Cloud API error reference; unknown codes fall back to the title Meta sent.
const MEANINGS: Record<number, string> = {
  0: "Meta could not authenticate the request",
  1: "Meta had an unknown error; try again",
  2: "Meta's service is temporarily unavailable",
  3: "the app lacks the capability for this call",
  4: "the app hit Meta's rate limit",
  10: "permission denied: the token lacks a permission",
  100: "invalid parameter in the request",
  190: "the access token expired or was revoked: replace it",
  368: "the account is temporarily blocked for policy violations",
  80007: "the WhatsApp Business Account hit its rate limit",
  130429: "throughput limit reached: too many messages per second",
  130472: "the user's number is part of a Meta experiment",
  131000: "something went wrong at Meta; try again",
  131005: "access denied: the token lacks permission",
  131008: "a required parameter is missing",
  131009: "a parameter value is not valid",
  131016: "Meta's service is temporarily unavailable",
  131021: "the recipient cannot be the sender",
  131026: "message undeliverable: the number may not be on WhatsApp or must accept new terms",
  131030: "the recipient is not in the test number's allowed list",
  131031: "the business account is locked",
  131042: "a payment problem on the business account",
  131045: "the phone number's certificate is not valid",
  131047: "more than 24 hours since the user last wrote: only a template can be sent",
  131051: "unsupported message type",
  131052: "the user's media could not be downloaded",
  131053: "the media could not be uploaded",
  131056: "too many messages to this user in a short time",
  132000: "the template's parameter count does not match",
  132001: "the template does not exist in this language",
  133010: "the phone number is not registered on the Cloud API",
};

/** "131047: more than 24 hours since…", or the code and Meta's title when we have no words. */
export function describeMetaError(code: number | null | undefined, title?: string | null): string {
  if (code === null || code === undefined) return title || "the message could not be sent";
  const meaning = MEANINGS[code];
  return `${code}: ${meaning ?? title ?? "Meta refused the message"}`;
}
