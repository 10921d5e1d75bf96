/**
 * Prometheus gauges of the budget bank, read from its status at scrape time (nothing on the hot path). Labels are
 * campaign ids from the config (bounded). In a cluster every worker reports its own; the main thread sums them.
 */
import client from 'prom-client';
import type { BankBook, BudgetBank } from './bank.js';
import type { HealthCheck } from '../metrics/metrics.js';

export function registerBankMetrics(registry: client.Registry, bank: () => BudgetBank | null): void {
  const registers = [registry];
  new client.Gauge({
    name: 'segbid_budget_bank_connected',
    help: 'Budget bank (main thread or Redis) reachable: 1 per process or worker that can lease',
    registers,
    collect() {
      const b = bank();
      this.set(b === null ? 0 : b.status().connected ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'segbid_budget_bank_calls',
    help: 'Budget bank calls (lease, renew, report) by result since start',
    labelNames: ['result'],
    registers,
    collect() {
      const s = bank()?.status();
      this.set({ result: 'ok' }, s ? s.calls - s.failures : 0);
      this.set({ result: 'failed' }, s ? s.failures : 0);
    },
  });
  new client.Gauge({
    name: 'segbid_budget_bank_held_micros',
    help: 'Budget granted to this process and not yet spent nor reserved, micros',
    labelNames: ['campaign'],
    registers,
    collect() {
      this.reset();
      for (const c of bank()?.status().campaigns ?? []) this.set({ campaign: c.id }, c.heldMicros);
    },
  });
  new client.Gauge({
    name: 'segbid_budget_bank_granted_micros',
    help: 'Budget granted to this process so far (less what it gave back), micros',
    labelNames: ['campaign'],
    registers,
    collect() {
      this.reset();
      for (const c of bank()?.status().campaigns ?? []) this.set({ campaign: c.id }, c.grantedMicros);
    },
  });
}

/**
 * The bank's entry in /readyz. Always ok: with the bank unreachable the bidder still answers and spends what it
 * holds, and taking every instance out of rotation at once (Redis down) would be the worse outage. The detail
 * shows it (connected, time since the last answer, failures), for alerting.
 */
export function bankHealthCheck(bank: BudgetBank): HealthCheck {
  return {
    name: 'budgetBank',
    ok: () => true,
    detail: () => {
      const s = bank.status();
      return { kind: s.kind, client: s.client, connected: s.connected, sinceLastReplyMs: s.sinceLastReplyMs, calls: s.calls, failures: s.failures, lastError: s.lastError };
    },
  };
}

/** The main thread's book (`--workers N`): the campaign totals every worker leases from. */
export function registerBookMetrics(registry: client.Registry, book: BankBook, reclaimed: () => number): void {
  const registers = [registry];
  new client.Gauge({
    name: 'segbid_budget_book_granted_micros',
    help: 'Budget granted to the workers so far (less what they gave back), per campaign, micros',
    labelNames: ['campaign'],
    registers,
    collect() {
      this.reset();
      for (const id of book.campaignIds()) this.set({ campaign: id }, book.totals(id)!.granted);
    },
  });
  new client.Gauge({
    name: 'segbid_budget_book_spent_micros',
    help: 'Spend the workers reported, per campaign, micros',
    labelNames: ['campaign'],
    registers,
    collect() {
      this.reset();
      for (const id of book.campaignIds()) this.set({ campaign: id }, book.totals(id)!.spent);
    },
  });
  new client.Gauge({
    name: 'segbid_budget_book_reclaimed_micros',
    help: 'Unspent grants of dead workers taken back after their reservations timed out, micros',
    registers,
    collect() {
      this.set(reclaimed());
    },
  });
}
