/** `fedmq node` on its own (entry.ts loads this file for it): the device runtime and nothing the other commands need. */
import { Command } from 'commander';
import { registerNodeCommand } from './node-command.ts';
import { logLevelOption, runProgram } from './process.ts';

const program = new Command('fedmq')
  .description('Federated learning for IoT and edge fleets over MQTT')
  .showHelpAfterError()
  .addOption(logLevelOption());
registerNodeCommand(program);
runProgram(program);
