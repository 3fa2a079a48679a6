// Connections that have not logged in yet hold memory and a descriptor each,
// and cost an attacker nothing: they are counted from accept until their
// handshake is over, per source address and in all.
export interface LoggingInLimits {
  perAddress: number;
  total: number;
}

export class LoggingIn {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: LoggingInLimits = { perAddress: 64, total: 1024 }) {}

  /** A slot for a new connection from `address`, released by the function returned; or why there is none. */
  take(address: string): { release: () => void } | { refused: string } {
    const from = this.byAddress.get(address) ?? 0;
    if (from >= this.limits.perAddress) return { refused: `too many connections from ${address} are still logging in; retry shortly` };
    if (this.total >= this.limits.total) return { refused: 'too many connections to this gateway are still logging in; retry shortly' };
    this.byAddress.set(address, from + 1);
    this.total++;
    return {
      release: () => {
        this.total--;
        const n = (this.byAddress.get(address) ?? 1) - 1;
        if (n > 0) this.byAddress.set(address, n);
        else this.byAddress.delete(address);
      },
    };
  }
}
