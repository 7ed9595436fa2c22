// Generated from deno.json by `deno task version`; do not edit.

/** The version of this package, as in `deno.json`. */
export const VERSION: string = "0.1.0";
