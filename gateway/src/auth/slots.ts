// Connections hold memory and a descriptor each, and a client can open many
// for nothing: they are counted per source address and in all, once while
// they log in and once while their session lasts, against limits a user sets.
export interface SlotLimits {
  /** 0: no limit. */
  perAddress: number;
  /** 0: no limit. */
  total: number;
}

export class AddressSlots {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  /** `what`: what the counted connections are doing, for the refusal ("still logging in"). */
  constructor(
    private readonly limits: SlotLimits,
    private readonly what: string,
  ) {}

  /** Connections counted now, from all addresses. */
  get count(): number {
    return this.total;
  }

  /** A slot for a new connection from `address`, released by the function returned (once); or why there is none. */
  take(address: string): { release: () => void } | { refused: string } {
    const from = this.byAddress.get(address) ?? 0;
    const { perAddress, total } = this.limits;
    if (perAddress > 0 && from >= perAddress) return { refused: `too many connections from ${address} are ${this.what} (limit ${perAddress}); retry shortly` };
    if (total > 0 && this.total >= total) return { refused: `too many connections to this gateway are ${this.what} (limit ${total}); retry shortly` };
    this.byAddress.set(address, from + 1);
    this.total++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const n = (this.byAddress.get(address) ?? 1) - 1;
        if (n > 0) this.byAddress.set(address, n);
        else this.byAddress.delete(address);
      },
    };
  }
}
