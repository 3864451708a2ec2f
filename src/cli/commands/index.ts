// Every subcommand, in the order `vfio-mig --help` lists them.
import type { Command } from '../command.js';
import { bridgeCommand } from './bridge.js';
import { demoCommand } from './demo.js';
import { diffCommand } from './diff.js';
import { fsmCommand } from './fsm.js';
import { inspectCommand } from './inspect.js';
import { loadCommand } from './load.js';
import { replayCommand } from './replay.js';
import { saveCommand } from './save.js';

export const COMMANDS: Command[] = [
  demoCommand,
  fsmCommand,
  inspectCommand,
  saveCommand,
  loadCommand,
  diffCommand,
  bridgeCommand,
  replayCommand,
];
