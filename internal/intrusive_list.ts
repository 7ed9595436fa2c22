/**
 * Doubly linked lists whose links live in the nodes themselves: O(1) append and removal from
 * anywhere, with no allocation and no array shifting on the hot path.
 */

/** A node that can sit in one list at a time. */
export interface ListNode<T> {
  prev: T | undefined;
  next: T | undefined;
}

/** The ends of a list. */
export interface List<T> {
  head: T | undefined;
  tail: T | undefined;
}

/** Appends `node`, which must not be in a list. */
export function append<T extends ListNode<T>>(list: List<T>, node: T): void {
  node.prev = list.tail;
  node.next = undefined;
  if (list.tail === undefined) list.head = node;
  else list.tail.next = node;
  list.tail = node;
}

/** Removes `node`, which must be in `list`. */
export function unlink<T extends ListNode<T>>(list: List<T>, node: T): void {
  if (node.prev === undefined) list.head = node.next;
  else node.prev.next = node.next;
  if (node.next === undefined) list.tail = node.prev;
  else node.next.prev = node.prev;
  node.prev = node.next = undefined;
}
