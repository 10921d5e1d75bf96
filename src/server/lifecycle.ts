/** Process-wide state the operations port reports: ready once a config is serving, draining on shutdown. */
export class Lifecycle {
  ready = false;
  draining = false;
  reloading = false;
  lastError: string | null = null;

  get serving(): boolean {
    return this.ready && !this.draining && !this.reloading;
  }
}
