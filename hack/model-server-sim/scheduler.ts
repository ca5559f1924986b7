// Request admission as llm-d-inference-sim does it (pkg/llm-d-inference-sim/simulator.go:
// processing/dequeue, lora.go: loadLora): at most max-num-seqs requests run; the rest wait in a
// FIFO queue of max-waiting-queue-length. A LoRA request also needs its adapter active: at most
// max-loras adapters are active; an active adapter with no running request may be evicted for
// another. When a slot frees, the first waiting request whose model is already active runs, else
// the first whose adapter can be activated. Pure: no timers, no I/O.

export interface Job {
  /** Requested model name (a served name or a LoRA adapter). */
  model: string;
  isLora: boolean;
  /** KV-cache blocks this request holds while running. */
  kvBlocks: number;
  /** Called once, when the job is admitted to run. */
  start(): void;
}

export interface SchedulerLimits {
  maxNumSeqs: number;
  maxLoras: number;
  maxWaitingQueueLength: number;
}

export interface SchedulerState {
  running: number;
  waiting: number;
  kvBlocksInUse: number;
  /** Adapters with running requests / with waiting requests (labels of vllm:lora_requests_info). */
  runningLoras: string[];
  waitingLoras: string[];
}

export type Admission = "running" | "waiting" | "rejected";

export class Scheduler {
  private readonly queue: Job[] = [];
  private readonly runningJobs = new Set<Job>();
  /** Active adapters -> number of running requests (upstream loras.loadedLoras). */
  private readonly activeLoras = new Map<string, number>();

  constructor(
    private readonly limits: SchedulerLimits,
    private readonly onChange: (state: SchedulerState) => void = () => {},
  ) {}

  submit(job: Job): Admission {
    if (this.runningJobs.size < this.limits.maxNumSeqs && this.activate(job)) {
      this.run(job);
      this.onChange(this.state());
      return "running";
    }
    if (this.queue.length >= this.limits.maxWaitingQueueLength) return "rejected";
    this.queue.push(job);
    this.onChange(this.state());
    return "waiting";
  }

  /** A running job ended, or a waiting one was abandoned by its client. */
  finish(job: Job): void {
    if (this.runningJobs.delete(job)) {
      if (job.isLora) this.activeLoras.set(job.model, (this.activeLoras.get(job.model) ?? 1) - 1);
      this.pump();
    } else {
      const index = this.queue.indexOf(job);
      if (index < 0) return;
      this.queue.splice(index, 1);
    }
    this.onChange(this.state());
  }

  state(): SchedulerState {
    let kvBlocksInUse = 0;
    for (const job of this.runningJobs) kvBlocksInUse += job.kvBlocks;
    const runningLoras = [...this.activeLoras].filter(([, n]) => n > 0).map(([name]) => name);
    const waitingLoras = [...new Set(this.queue.filter(j => j.isLora).map(j => j.model))];
    return {
      running: this.runningJobs.size,
      waiting: this.queue.length,
      kvBlocksInUse,
      runningLoras,
      waitingLoras,
    };
  }

  private isActive(job: Job): boolean {
    return !job.isLora || this.activeLoras.has(job.model);
  }

  /** Takes a running slot on the job's adapter, activating (evicting an idle one) if needed. */
  private activate(job: Job): boolean {
    if (!job.isLora) return true;
    const count = this.activeLoras.get(job.model);
    if (count === undefined && this.activeLoras.size >= this.limits.maxLoras) {
      const idle = [...this.activeLoras].find(([, n]) => n === 0);
      if (!idle) return false;
      this.activeLoras.delete(idle[0]);
    }
    this.activeLoras.set(job.model, (count ?? 0) + 1);
    return true;
  }

  private pump(): void {
    while (this.runningJobs.size < this.limits.maxNumSeqs) {
      let index = this.queue.findIndex(j => this.isActive(j));
      if (index < 0 && this.hasFreeLoraSlot()) index = this.queue.findIndex(j => j.isLora);
      if (index < 0) return;
      const [job] = this.queue.splice(index, 1);
      this.activate(job);
      this.run(job);
    }
  }

  private hasFreeLoraSlot(): boolean {
    return (
      this.activeLoras.size < this.limits.maxLoras || [...this.activeLoras.values()].includes(0)
    );
  }

  private run(job: Job): void {
    this.runningJobs.add(job);
    job.start();
  }
}
