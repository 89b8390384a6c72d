export { JobWorker, newWorkerId, type Worker, type WorkerOptions } from './worker.js';
export { Reaper, type ReapResult } from './reaper.js';
