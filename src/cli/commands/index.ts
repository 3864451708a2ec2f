// Every subcommand, in the order `vfio-mig --help` lists them.
import type { Command } from '../command.js';
import { demoCommand } from './demo.js';
import { fsmCommand } from './fsm.js';

export const COMMANDS: Command[] = [demoCommand, fsmCommand];
