/**
 * Worker thread of the batch loader: builds the batches it is sent and
 * transfers their buffers back (see loader.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { buildBatch, CaseMemory, transferablesOf, type BatchRequest } from './loader.ts';

if (!parentPort) throw new Error('loader-worker.ts must run as a worker thread');
const port = parentPort;
const memory = new CaseMemory((workerData as { caseMemoryBytes: number }).caseMemoryBytes);

port.on('message', ({ taskId, request }: { taskId: number; request: BatchRequest }) => {
  try {
    const batch = buildBatch(request, memory);
    port.postMessage({ taskId, batch }, transferablesOf(batch));
  } catch (error) {
    port.postMessage({ taskId, error: (error as Error).message });
  }
});
