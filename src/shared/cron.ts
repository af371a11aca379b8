/**
 * Five-field cron schedules (minute hour day-of-month month day-of-week), in UTC, as a Kubernetes
 * CronJob without `timeZone` reads them; pure. A field is `*`, a number, a range `a-b`, any of those
 * with a step `/n`, or a comma list of them; day-of-week takes 0-7 (0 and 7 are Sunday). Names
 * (`MON`, `JAN`) are not taken. `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and
 * `@yearly` (`@annually`) stand for their usual five fields.
 *
 * As in Vixie cron: when both day-of-month and day-of-week are restricted (neither starts with `*`),
 * a day matches when EITHER does.
 */

export interface Cron {
  minutes: ReadonlySet<number>;
  hours: ReadonlySet<number>;
  days: ReadonlySet<number>;
  months: ReadonlySet<number>;
  weekdays: ReadonlySet<number>;
  /** Day-of-month is `*`-based (unrestricted), so only day-of-week restricts the day. */
  anyDay: boolean;
  /** Day-of-week is `*`-based. */
  anyWeekday: boolean;
}

const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day-of-month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12 },
  { name: "day-of-week", min: 0, max: 7 },
] as const;

const MACROS: Record<string, string> = {
  "@hourly": "0 * * * *",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@weekly": "0 0 * * 0",
  "@monthly": "0 0 1 * *",
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
};

/** What the CRD's pattern admits: a macro, or five fields of digits, `*`, `,`, `-` and `/`. */
export const CRON_PATTERN =
  "^(@(hourly|daily|midnight|weekly|monthly|yearly|annually)|([0-9*,/-]+ ){4}[0-9*,/-]+)$";

function parseField(text: string, f: (typeof FIELDS)[number]): Set<number> | string {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) return `${f.name} "${part}" is not a number, a range a-b, * or one of them with /step`;
    const lo = m[1] === "*" ? f.min : Number(m[2]);
    // `5/15` means 5-max/15, as in Vixie cron.
    const hi = m[1] === "*" ? f.max : m[3] !== undefined ? Number(m[3]) : m[4] ? f.max : lo;
    const step = m[4] === undefined ? 1 : Number(m[4]);
    if (lo < f.min || hi > f.max) return `${f.name} "${part}" is outside ${f.min}-${f.max}`;
    if (lo > hi) return `${f.name} "${part}" is a range whose start is after its end`;
    if (step < 1) return `${f.name} "${part}" has a step of 0`;
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

/** The schedule, or a message that names the field that is wrong. */
export function parseCron(expr: string): Cron | { problem: string } {
  const text = MACROS[expr.trim()] ?? expr.trim();
  const parts = text.split(/\s+/);
  if (parts.length !== 5)
    return {
      problem: `"${expr}" has ${parts.length} fields; a schedule has 5 (minute hour day month weekday)`,
    };
  const sets: Set<number>[] = [];
  for (const [i, f] of FIELDS.entries()) {
    const s = parseField(parts[i] ?? "", f);
    if (typeof s === "string") return { problem: s };
    sets.push(s);
  }
  const [minutes, hours, days, months, weekdays] = sets as [
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
  ];
  if (weekdays.delete(7)) weekdays.add(0);
  return {
    minutes,
    hours,
    days,
    months,
    weekdays,
    anyDay: parts[2]!.startsWith("*"),
    anyWeekday: parts[4]!.startsWith("*"),
  };
}

function dayMatches(c: Cron, d: Date): boolean {
  const dom = c.days.has(d.getUTCDate());
  const dow = c.weekdays.has(d.getUTCDay());
  if (c.anyDay && c.anyWeekday) return true;
  if (c.anyDay) return dow;
  if (c.anyWeekday) return dom;
  return dom || dow;
}

/**
 * The first minute strictly after `after` that the schedule names (UTC), or undefined when none
 * comes within eight years (`0 0 30 2 *`: February 30th).
 */
export function nextCronTime(c: Cron, after: Date): Date | undefined {
  const t = new Date(after.getTime());
  t.setUTCSeconds(0, 0);
  t.setUTCMinutes(t.getUTCMinutes() + 1);
  const limit = after.getTime() + 8 * 366 * 86_400_000;
  while (t.getTime() <= limit) {
    if (!c.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(c, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!c.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!c.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return t;
  }
  return undefined;
}
