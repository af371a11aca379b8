/**
 * Azure Workload Identity: a token for Azure Storage from the pod's federated service-account token,
 * as the webhook sets it up (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE,
 * AZURE_AUTHORITY_HOST). The token file is read again for every exchange (the kubelet rotates it);
 * an access token is reused until five minutes before it expires.
 *
 * Shaped as @azure/core-auth's TokenCredential (getToken(scopes) -> {token, expiresOnTimestamp}),
 * so the storage SDK takes it as is; no SDK is imported here.
 */
import { readFile } from "node:fs/promises";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { requestToken } from "./oauth-token.ts";

export const STORAGE_SCOPE = "https://storage.azure.com/.default";
const DEFAULT_AUTHORITY = "https://login.microsoftonline.com/";
const REFRESH_EARLY_MS = 5 * 60_000;

export interface WorkloadIdentityOptions {
  tenantId: string;
  clientId: string;
  tokenFile: string;
  /** Default https://login.microsoftonline.com/ (AZURE_AUTHORITY_HOST). */
  authorityHost?: string;
}

/** The workload-identity settings the webhook puts in the environment, if all are there. */
export function workloadIdentityFromEnv(env: NodeJS.ProcessEnv): WorkloadIdentityOptions | undefined {
  const tenantId = env.AZURE_TENANT_ID;
  const clientId = env.AZURE_CLIENT_ID;
  const tokenFile = env.AZURE_FEDERATED_TOKEN_FILE;
  if (!tenantId || !clientId || !tokenFile) return undefined;
  const out: WorkloadIdentityOptions = { tenantId, clientId, tokenFile };
  if (env.AZURE_AUTHORITY_HOST) out.authorityHost = env.AZURE_AUTHORITY_HOST;
  return out;
}

export class WorkloadIdentityCredential {
  readonly #o: WorkloadIdentityOptions;
  #cached: { token: string; expiresOnTimestamp: number } | undefined;
  #pending: Promise<{ token: string; expiresOnTimestamp: number }> | undefined;

  constructor(o: WorkloadIdentityOptions) {
    this.#o = o;
  }

  async getToken(
    _scopes: string | string[],
    options?: { abortSignal?: AbortSignal },
  ): Promise<{ token: string; expiresOnTimestamp: number }> {
    if (this.#cached && this.#cached.expiresOnTimestamp - REFRESH_EARLY_MS > Date.now()) return this.#cached;
    this.#pending ??= this.#exchange(options?.abortSignal).finally(() => {
      this.#pending = undefined;
    });
    this.#cached = await this.#pending;
    return this.#cached;
  }

  async #exchange(signal: AbortSignal | undefined): Promise<{ token: string; expiresOnTimestamp: number }> {
    const authority = (this.#o.authorityHost ?? DEFAULT_AUTHORITY).replace(/\/*$/, "/");
    const url = `${authority}${encodeURIComponent(this.#o.tenantId)}/oauth2/v2.0/token`;
    let assertion: string;
    try {
      assertion = (await readFile(this.#o.tokenFile, "utf8")).trim();
    } catch (err) {
      throw new WalshipError(
        ErrorCodes.STORAGE,
        `azure workload identity: cannot read the federated token file ${this.#o.tokenFile}: ${(err as Error).message}`,
        { cause: err, details: { path: this.#o.tokenFile } },
      );
    }
    const body = new URLSearchParams({
      client_id: this.#o.clientId,
      scope: STORAGE_SCOPE,
      grant_type: "client_credentials",
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: assertion,
    });
    const { token, expiresAt } = await requestToken(
      url,
      body,
      { what: "azure workload identity", principal: `client ${this.#o.clientId}` },
      signal,
    );
    return { token, expiresOnTimestamp: expiresAt };
  }
}
