/**
 * The environment as a config reads it: where the file is, `$VAR` expansion (Go's os.ExpandEnv), and
 * what never goes back out (URL passwords, trailing newlines of credentials). Pure.
 */
import { DEFAULT_CONFIG_PATH } from "./types.ts";

/** The config file to read: `WALSHIP_CONFIG`, else `LITESTREAM_CONFIG`, else /etc/litestream.yml. */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.WALSHIP_CONFIG || env.LITESTREAM_CONFIG || DEFAULT_CONFIG_PATH;
}

/** Copies `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY` to `AWS_*` where those are unset. */
export function applyEnvCredentials(env: NodeJS.ProcessEnv): void {
  const pairs = [
    ["LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
    ["LITESTREAM_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
  ] as const;
  for (const [from, to] of pairs) {
    const v = env[from];
    if (v !== undefined && env[to] === undefined) env[to] = v;
  }
}

/**
 * Expands `$NAME` and `${NAME}` from `env` as Go's `os.ExpandEnv` does: unset names become empty;
 * `$` followed by a shell special character (`*#$@!?-` or a digit) takes that one character as the
 * name; a malformed `${...` is dropped; a `$` before anything else is kept.
 */
export function expandEnvText(text: string, env: NodeJS.ProcessEnv): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== "$" || i + 1 >= text.length) {
      out += c;
      i++;
      continue;
    }
    const rest = text.slice(i + 1);
    if (rest[0] === "{") {
      const close = rest.indexOf("}");
      if (close === -1) {
        i += 2; // "${" with no closing brace: dropped
        continue;
      }
      const name = rest.slice(1, close);
      if (name !== "") out += env[name] ?? "";
      i += close + 2;
      continue;
    }
    if (/^[*#$@!?\-0-9]/.test(rest)) {
      out += env[rest[0]!] ?? "";
      i += 2;
      continue;
    }
    const name = /^[A-Za-z0-9_]*/.exec(rest)?.[0] ?? "";
    if (name === "") {
      out += "$";
      i++;
      continue;
    }
    out += env[name] ?? "";
    i += 1 + name.length;
  }
  return out;
}

/** `scheme://user:password@host` becomes `scheme://user:(password)@host` anywhere in `text`. */
export function redactUrlPasswords(text: string): string {
  return text.replace(/(\b\w+:\/\/[^\s/@:"]*):[^\s/@"]*@/g, "$1:(password)@");
}

/** A credential as read: trailing newlines dropped (a Secret made from a file usually ends with one). */
export function trimCredential(value: string): string {
  return value.replace(/[\r\n]+$/, "");
}
