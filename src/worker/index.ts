export { JobWorker, type Worker, type WorkerOptions } from './worker.js';
export { Reaper, type ReapResult } from './reaper.js';
