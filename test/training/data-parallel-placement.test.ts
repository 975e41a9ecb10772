// Placement of training processes from torchrun's environment variables, and the launcher's command line.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withoutLauncherFlags } from '../../src/cli/launch.ts';
import { deviceOfProcess, placementEnvironment, placementFromEnvironment } from '../../src/training/data-parallel.ts';

const TORCHRUN = { RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'node0', MASTER_PORT: '29500' };

describe('placement', () => {
  it('reads the variables torchrun sets, and writes them back for the processes a launcher starts', () => {
    const placement = placementFromEnvironment(TORCHRUN);
    assert.deepEqual(placement, { rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'node0', masterPort: 29500 });
    assert.deepEqual(placementEnvironment(placement!), TORCHRUN);
  });

  it('is absent without WORLD_SIZE; LOCAL_WORLD_SIZE defaults to WORLD_SIZE', () => {
    assert.equal(placementFromEnvironment({}), null);
    const { LOCAL_WORLD_SIZE: _, ...withoutLocal } = TORCHRUN;
    assert.equal(placementFromEnvironment({ ...withoutLocal, RANK: '1', LOCAL_RANK: '1' })?.localWorldSize, 8);
  });

  it('names missing or malformed variables', () => {
    const { MASTER_ADDR: _, MASTER_PORT: __, ...partial } = TORCHRUN;
    assert.throws(() => placementFromEnvironment(partial), /MASTER_ADDR, MASTER_PORT are not/);
    assert.throws(() => placementFromEnvironment({ ...TORCHRUN, RANK: '8' }), /RANK=8: expected an integer in \[0, 7\]/);
  });

  it('gives each process of a machine its own GPU', () => {
    const placement = placementFromEnvironment(TORCHRUN)!;
    assert.equal(deviceOfProcess('cuda', placement), 'cuda:1');
    assert.equal(deviceOfProcess('cuda:3', placement), 'cuda:3');
    assert.equal(deviceOfProcess('cpu', placement), 'cpu');
  });

  it('the launcher passes the command on without its own flags', () => {
    const args = ['train', '--out', 'run', '--nproc-per-node', '2', '--nnodes=2', '--node-rank', '1', '--master-addr', 'h', '--master-port=1', '--threads', '1'];
    assert.deepEqual(withoutLauncherFlags(args), ['train', '--out', 'run', '--threads', '1']);
  });
});
