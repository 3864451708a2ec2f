// Arms a FaultPlan and fires each of its faults once: a chosen arc fails, the
// Nth read or write on the data path fails with an errno, and the next saving
// stream is cut short or has one bit flipped.
import { MigrationError } from '../uapi/errors.js';
import type { ArcFault, FaultPlan } from './faults.js';

export interface StreamFaults {
  truncateStreamAt?: number;
  corruptStreamAt?: number;
}

export class FaultInjector {
  private plan: FaultPlan = {};
  private reads = 0;
  private writes = 0;

  constructor(plan?: FaultPlan) {
    if (plan) this.arm(plan);
  }

  /** Replace the plan; read/write counting starts again at 1. */
  arm(plan: FaultPlan): void {
    for (const at of [plan.truncateStreamAt, plan.corruptStreamAt]) {
      if (at !== undefined && (!Number.isSafeInteger(at) || at < 0))
        throw new MigrationError('EINVAL', `bad stream offset ${at} in fault plan`);
    }
    if (plan.failIo && (!Number.isInteger(plan.failIo.nth) || plan.failIo.nth < 1))
      throw new MigrationError('EINVAL', 'failIo.nth counts from 1');
    this.plan = { ...plan };
    this.reads = 0;
    this.writes = 0;
  }

  /** Faults not fired yet. */
  get pending(): Readonly<FaultPlan> {
    return this.plan;
  }

  /** The arc fault for from->to, consumed; undefined when this arc should succeed. */
  takeArcFault(from: number, to: number): ArcFault | undefined {
    const f = this.plan.failArc;
    if (!f || f.from !== from || f.to !== to) return undefined;
    delete this.plan.failArc;
    return f;
  }

  /** Count one data-path call; throws the planned errno when it is the Nth of its kind. */
  countIo(op: 'read' | 'write'): void {
    const n = op === 'read' ? ++this.reads : ++this.writes;
    const f = this.plan.failIo;
    if (f && f.op === op && f.nth === n) {
      delete this.plan.failIo;
      throw new MigrationError(f.errno, `injected fault: ${op} #${n}`);
    }
  }

  /** The stream faults, handed to (and consumed by) the saving stream that takes them. */
  takeStreamFaults(): StreamFaults {
    const { truncateStreamAt, corruptStreamAt } = this.plan;
    delete this.plan.truncateStreamAt;
    delete this.plan.corruptStreamAt;
    return { truncateStreamAt, corruptStreamAt };
  }
}
