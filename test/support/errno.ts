// The one way the suites ask "which errno did this fail with?": every
// failure the project reports is a MigrationError carrying an errno name;
// anything else thrown (a TypeError, a plain Error) fails the test.
// MigrationError comes from the package root: the lab aliases that to the
// built dist/, whose class is the one the devices there throw.
import { expect } from 'vitest';
import { MigrationError } from '../../index.js';

/** 'ok', or the errno name of the MigrationError `run` throws / `pending` rejects with. */
export function errnoOf(run: () => unknown): string;
export function errnoOf(pending: Promise<unknown>): Promise<string>;
export function errnoOf(op: (() => unknown) | Promise<unknown>): string | Promise<string> {
  const code = (e: MigrationError | undefined) => e?.code ?? 'ok';
  return typeof op === 'function' ? code(caught(op)) : settled(op).then(code);
}

/** The MigrationError a call fails with; success, or anything else thrown, fails the test. */
export function failure(run: () => unknown): MigrationError;
export function failure(pending: Promise<unknown>): Promise<MigrationError>;
export function failure(op: (() => unknown) | Promise<unknown>): MigrationError | Promise<MigrationError> {
  const required = (e: MigrationError | undefined) => {
    if (!e) throw new Error('expected a MigrationError, the call succeeded');
    return e;
  };
  return typeof op === 'function' ? required(caught(op)) : settled(op).then(required);
}

/** What `run` threw (a MigrationError, else the test fails), or undefined. */
function caught(run: () => unknown): MigrationError | undefined {
  try {
    run();
    return undefined;
  } catch (e) {
    return migrationError(e);
  }
}

async function settled(pending: Promise<unknown>): Promise<MigrationError | undefined> {
  try {
    await pending;
    return undefined;
  } catch (e) {
    return migrationError(e);
  }
}

function migrationError(e: unknown): MigrationError {
  expect(e).toBeInstanceOf(MigrationError);
  return e as MigrationError;
}
