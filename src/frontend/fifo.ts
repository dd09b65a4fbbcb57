// A first-in first-out queue with O(1) shift: an array and a head index, compacted as the
// head advances. Array.prototype.shift moves every element; with the hundreds of thousands
// of requests a client can pipeline without a Sync, that made each response O(n).
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number { return this.items.length - this.head; }

  push(x: T): void { this.items.push(x); }

  /** The oldest entry (undefined when empty). */
  first(): T | undefined { return this.items[this.head]; }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) { this.items.length = 0; this.head = 0; }
    else if (this.head >= 1024 && this.head * 2 >= this.items.length) { this.items = this.items.slice(this.head); this.head = 0; }
    return x;
  }

  indexOf(x: T): number {
    const i = this.items.indexOf(x, this.head);
    return i < 0 ? -1 : i - this.head;
  }

  removeAt(i: number): void { this.items.splice(this.head + i, 1); }

  every(fn: (x: T) => boolean): boolean {
    for (let i = this.head; i < this.items.length; i++) if (!fn(this.items[i] as T)) return false;
    return true;
  }
}
