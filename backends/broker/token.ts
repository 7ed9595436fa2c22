/** The shared token: hashed once, compared in constant time. */

async function sha256(text: string): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return new Uint8Array(digest);
}

/**
 * Checks presented tokens against the expected one. Both are hashed with SHA-256 and the digests
 * compared with a loop that always runs to the end, so neither the length nor the first differing
 * character of the expected token leaks through timing.
 */
export class TokenCheck {
  readonly #expected: Promise<Uint8Array>;

  /** @param token The expected token; must not be empty (checked by the caller). */
  constructor(token: string) {
    this.#expected = sha256(token);
    this.#expected.catch(() => {}); // reported by matches(), never as an unhandled rejection
  }

  /** Whether `presented` is the expected token. */
  async matches(presented: string): Promise<boolean> {
    const [expected, actual] = await Promise.all([this.#expected, sha256(presented)]);
    let difference = 0;
    for (let i = 0; i < expected.length; i++) difference |= expected[i] ^ actual[i];
    return difference === 0;
  }
}
