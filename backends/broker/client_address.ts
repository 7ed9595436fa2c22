/**
 * The key under which the broker counts a client's failed authentications: its IP address, with
 * an IPv6 address cut to its /64 network (one host usually has a whole /64 to pick addresses from,
 * so counting single IPv6 addresses would count nothing) and an IPv4-mapped IPv6 address written
 * as the IPv4 address it is.
 */

const MAPPED_IPV4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/;
const HEXTET = /^[0-9a-f]{1,4}$/;

/** The eight 16-bit groups of an IPv6 address, or `undefined` if `text` is not one. */
function ipv6Groups(text: string): string[] | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const split = (part: string) => (part === "" ? [] : part.split(":"));
  const head = split(halves[0]);
  const tail = halves.length === 2 ? split(halves[1]) : [];
  // An IPv4 address in the last 32 bits (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) takes two groups.
  const last = halves.length === 2 ? tail : head;
  if (last.length > 0 && last[last.length - 1].includes(".")) last.splice(-1, 1, "0", "0");
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [
    ...head,
    ...new Array<string>(halves.length === 2 ? missing : 0).fill("0"),
    ...tail,
  ];
  if (!groups.every((group) => HEXTET.test(group))) return undefined;
  return groups.map((group) => parseInt(group, 16).toString(16));
}

/**
 * The counting key of a client address as a server reports it (`"203.0.113.7"`, `"::1"`,
 * `"[2001:db8::1]"`, `"::ffff:192.0.2.1"`, `"fe80::1%eth0"`). Anything that is not an IP address
 * is returned as it is, lower-cased.
 */
export function clientAddressKey(address: string): string {
  let text = address.trim().toLowerCase();
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const mapped = MAPPED_IPV4.exec(text);
  if (mapped !== null) return mapped[1];
  if (!text.includes(":")) return text;
  const groups = ipv6Groups(text);
  return groups === undefined ? text : `${groups.slice(0, 4).join(":")}::/64`;
}
