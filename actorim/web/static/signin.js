// How the chat page gets a token: by name in development mode, otherwise from the application
// (a `#token=...` fragment, a message from the page that opened or embeds it, its token
// endpoint, or pasted). Pure helpers and small I/O functions; app.js decides when to call them.

// Where the page keeps a token handed to it, for a reload of the same tab (never localStorage:
// a token should not outlive the tab that was given it).
const TOKEN_KEY = "actorim.token";
// The `type` of a message that hands the page a token: `{type: "actorim.token", token}`.
export const TOKEN_MESSAGE = "actorim.token";

/** The server's sign-in settings (`/page/config`): `{dev, login_url, token_url}`. */
export async function pageConfig() {
  const response = await fetch("/page/config", { cache: "no-store" });
  if (!response.ok) throw new Error(`The server answered ${response.status}.`);
  return response.json();
}

/** The claims of a JWT, unverified (the server verifies): `{sub, exp, ...}`, or null. */
export function claimsOf(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64));
    return claims && typeof claims.sub === "string" ? claims : null;
  } catch {
    return null;
  }
}

/** Whether `claims` say the token has expired at `nowMs`. */
export function expired(claims, nowMs) {
  return typeof claims.exp === "number" && claims.exp * 1000 <= nowMs;
}

/** The token of a `#token=...` fragment, taken out of the address bar (and so out of the
 * history and of anything copied from it); null without one. */
export function takeFragmentToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token === null) return null;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
  return token.trim() || null;
}

export function rememberToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function rememberedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Calls `handle(token)` for each token message from this page's origin or from `trusted`
 * origins (the application's, from `login_url`); others are ignored. Returns the unsubscribe. */
export function listenForTokens(trusted, handle) {
  const origins = new Set([location.origin, ...trusted]);
  const listener = (event) => {
    if (!origins.has(event.origin)) return;
    const data = event.data;
    if (!data || data.type !== TOKEN_MESSAGE || typeof data.token !== "string") return;
    handle(data.token.trim());
  };
  window.addEventListener("message", listener);
  return () => window.removeEventListener("message", listener);
}

/** The origin of `url` (absolute or a path on this page's origin), or null. */
export function originOf(url) {
  try {
    return new URL(url, location.href).origin;
  } catch {
    return null;
  }
}

/** A fresh token from the application's endpoint (`token_url`, same origin, its session
 * cookie): the token, or null when nobody is signed in there (401, 403). */
export async function fetchAppToken(tokenUrl) {
  const response = await fetch(tokenUrl, { cache: "no-store", credentials: "same-origin" });
  if (response.status === 401 || response.status === 403) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok || typeof data.token !== "string") {
    throw new Error(data.error || `The application's token endpoint answered ${response.status}.`);
  }
  return data.token;
}

/** A development token for `user` (`/dev/token`, development mode only). */
export async function fetchDevToken(user) {
  const response = await fetch(`/dev/token?user=${encodeURIComponent(user)}`, { cache: "no-store" });
  if (response.status === 404) {
    throw new Error("This server does not hand out development tokens (it runs without --dev).");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
  return data.token;
}

/** The hint under the sign-in form, for this server's settings. */
export function hintFor(config) {
  if (config.dev) return "Development mode: any name signs you in.";
  if (config.login_url) {
    return "Sign in with your account, or paste a token the application gave you.";
  }
  return (
    "This server signs people in with tokens from its application: open the chat from " +
    "there, or paste a token. Signing in by name works only in development mode."
  );
}
