/**
 * A Google service-account key (`credentials-file`) turned into access tokens by the OAuth 2.0 JWT
 * bearer grant (RFC 7523) at the key's own `token_uri`, as Google's Go client does. (The Node auth
 * library posts to a fixed URL whatever the key says, and warns that `keyFilename` is deprecated.)
 * No SDK here: gcs.ts hands the result to the storage client.
 */
import { createSign } from "node:crypto";
import { readFileSync } from "node:fs";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { requestToken } from "./oauth-token.ts";

export const STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write";

export interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  token_uri: string;
}

/** The key file's JSON: a service-account key (ours to exchange), or any other ADC type (the library's). */
export function readCredentialsFile(
  file: string,
): { serviceAccount: ServiceAccountKey } | { other: Record<string, unknown> } {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `credentials-file ${file}: cannot read it as JSON: ${(err as Error).message}`,
      { cause: err, details: { path: "credentials-file" } },
    );
  }
  if (json.type !== "service_account") return { other: json };
  for (const k of ["client_email", "private_key"] as const) {
    if (typeof json[k] !== "string" || json[k] === "") {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `credentials-file ${file}: the service-account key has no ${k}`,
        {
          details: { path: "credentials-file" },
        },
      );
    }
  }
  const key: ServiceAccountKey = {
    client_email: json.client_email as string,
    private_key: json.private_key as string,
    token_uri:
      typeof json.token_uri === "string" && json.token_uri
        ? json.token_uri
        : "https://oauth2.googleapis.com/token",
  };
  if (typeof json.private_key_id === "string") key.private_key_id = json.private_key_id;
  return { serviceAccount: key };
}

/** One access token for a service-account key: a signed JWT exchanged at its token_uri. */
export async function exchangeServiceAccountKey(
  key: ServiceAccountKey,
): Promise<{ access_token: string; expiry_date: number }> {
  const now = Math.floor(Date.now() / 1000);
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const header = enc({
    alg: "RS256",
    typ: "JWT",
    ...(key.private_key_id ? { kid: key.private_key_id } : {}),
  });
  const claims = enc({
    iss: key.client_email,
    scope: STORAGE_SCOPE,
    aud: key.token_uri,
    iat: now,
    exp: now + 3600,
  });
  let signature: string;
  try {
    signature = createSign("RSA-SHA256").update(`${header}.${claims}`).sign(key.private_key, "base64url");
  } catch (err) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `credentials-file: the private key of ${key.client_email} cannot sign: ${(err as Error).message}`,
      { cause: err, details: { path: "credentials-file" } },
    );
  }
  const body = new URLSearchParams({
    grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
    assertion: `${header}.${claims}.${signature}`,
  });
  const { token, expiresAt } = await requestToken(key.token_uri, body, {
    what: "gcs credentials",
    principal: `the key of ${key.client_email}`,
  });
  return { access_token: token, expiry_date: expiresAt };
}
