import type { FastifyInstance } from 'fastify';
import type { Docket } from '../../docket.js';
import {
  EXECUTION_STATUSES,
  type ExecutionStatus,
  type SchedulerTask,
  type TaskExecution,
  type TaskStats,
} from '../../scheduler/index.js';
import { scopeOf } from '../auth.js';
import {
  errorResponses,
  isoOrNull,
  isoTime,
  isoTimeOrNull,
  jobIdParamsSchema,
  pageQuerySchema,
  parseStatusList,
  statusListSchema,
  pageResponseSchema,
} from '../schemas.js';

const at = isoOrNull;
const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;

/** A scheduler task as the API returns it. */
export const taskSchema = {
  $id: 'SchedulerTask',
  type: 'object',
  properties: {
    name: { type: 'string' },
    tenantId: { type: 'string' },
    cron: { type: 'string' },
    timezone: { type: 'string' },
    defaultSchedule: {
      type: 'object',
      properties: { cron: { type: 'string' }, timezone: { type: 'string' } },
    },
    overridden: { type: 'boolean' },
    enabled: { type: 'boolean' },
    timeoutMs: { type: 'integer' },
    graceMs: { type: 'integer' },
    priority: { type: 'integer' },
    overlap: { type: 'string', enum: ['forbid', 'allow'] },
    catchUp: { type: 'string', enum: ['skip', 'once'] },
    nextRunAt: isoTimeOrNull,
    version: { type: 'integer' },
    createdAt: isoTime,
    updatedAt: isoTime,
  },
} as const;

/** A task execution as the API returns it. */
export const taskExecutionSchema = {
  $id: 'TaskExecution',
  type: 'object',
  properties: {
    id: { type: 'string' },
    task: { type: 'string' },
    tenantId: { type: 'string' },
    scheduledFor: isoTime,
    trigger: { type: 'string', enum: ['cron', 'manual'] },
    status: { type: 'string', enum: [...EXECUTION_STATUSES] },
    instanceId: { type: 'string' },
    fencingToken: { type: ['integer', 'null'] },
    traceId: { type: 'string' },
    startedAt: isoTime,
    finishedAt: isoTimeOrNull,
    durationMs: { type: ['number', 'null'] },
    error: { type: ['string', 'null'] },
    stack: { type: ['string', 'null'] },
  },
} as const;

/** Per-task stats as the API returns them. */
export const taskStatsSchema = {
  $id: 'TaskStats',
  type: 'object',
  properties: {
    task: { type: 'string' },
    since: isoTime,
    finished: { type: 'integer' },
    succeeded: { type: 'integer' },
    failures: { type: 'integer' },
    skipped: { type: 'integer' },
    successRate: { type: ['number', 'null'] },
    avgDurationMs: { type: ['number', 'null'] },
    p95DurationMs: { type: ['number', 'null'] },
    lastRunAt: isoTimeOrNull,
    lastStatus: { type: ['string', 'null'] },
    nextRunAt: isoTimeOrNull,
  },
} as const;

function taskDto(t: SchedulerTask) {
  return {
    ...t,
    nextRunAt: at(t.nextRunAt),
    createdAt: at(t.createdAt),
    updatedAt: at(t.updatedAt),
  };
}

function executionDto(e: TaskExecution) {
  return {
    ...e,
    scheduledFor: at(e.scheduledFor),
    startedAt: at(e.startedAt),
    finishedAt: at(e.finishedAt),
  };
}

function statsDto(s: TaskStats) {
  return { ...s, since: at(s.since), lastRunAt: at(s.lastRunAt), nextRunAt: at(s.nextRunAt) };
}

const taskResponse = { type: 'object', properties: { task: { $ref: 'SchedulerTask#' } } } as const;

/**
 * Scheduler tasks, executions and stats (SPEC H-4). A tenant API key sees its tenant's tasks;
 * the operator secret sees every task, including Docket's own `system` tasks.
 */
export function schedulerRoutes(docket: Docket) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get(
      '/scheduler/tasks',
      {
        schema: {
          summary: 'List scheduler tasks',
          tags: ['scheduler'],
          response: {
            200: {
              type: 'object',
              properties: { items: { type: 'array', items: { $ref: 'SchedulerTask#' } } },
            },
            ...errorResponses(401),
          },
        },
      },
      async (req) => ({ items: (await docket.scheduler.list(scopeOf(req))).map(taskDto) }),
    );

    app.get<{ Params: { name: string } }>(
      '/scheduler/tasks/:name',
      {
        schema: {
          summary: 'Get a scheduler task',
          tags: ['scheduler'],
          params: nameParams,
          response: { 200: taskResponse, ...errorResponses(401, 404) },
        },
      },
      async (req) => ({ task: taskDto(await docket.scheduler.get(req.params.name, scopeOf(req))) }),
    );

    for (const action of ['enable', 'disable'] as const) {
      app.post<{ Params: { name: string } }>(
        `/scheduler/tasks/:name/${action}`,
        {
          schema: {
            summary: `${action === 'enable' ? 'Enable' : 'Disable'} a task's cron ticks (audited)`,
            tags: ['scheduler'],
            params: nameParams,
            response: { 200: taskResponse, ...errorResponses(401, 404) },
          },
        },
        async (req) => {
          const task = await docket.scheduler[action](req.params.name, {
            ...scopeOf(req),
            traceId: req.traceId,
          });
          return { task: taskDto(task) };
        },
      );
    }

    app.put<{
      Params: { name: string };
      Body: { cron: string | null; timezone?: string };
    }>(
      '/scheduler/tasks/:name/schedule',
      {
        schema: {
          summary: "Override a task's schedule; cron null restores the code's (audited)",
          tags: ['scheduler'],
          params: nameParams,
          body: {
            type: 'object',
            required: ['cron'],
            additionalProperties: false,
            properties: {
              cron: { type: ['string', 'null'], minLength: 1, maxLength: 200 },
              timezone: { type: 'string', minLength: 1, maxLength: 100 },
            },
          },
          response: { 200: taskResponse, ...errorResponses(400, 401, 404) },
        },
      },
      async (req) => {
        const { cron, timezone } = req.body;
        const task = await docket.scheduler.updateSchedule(
          req.params.name,
          cron === null ? null : { cron, timezone },
          { ...scopeOf(req), traceId: req.traceId },
        );
        return { task: taskDto(task) };
      },
    );

    app.post<{ Params: { name: string } }>(
      '/scheduler/tasks/:name/trigger',
      {
        schema: {
          summary: 'Run a task now through the lock path (audited)',
          tags: ['scheduler'],
          params: nameParams,
          response: {
            202: { type: 'object', properties: { execution: { $ref: 'TaskExecution#' } } },
            ...errorResponses(401, 404, 409),
          },
        },
      },
      async (req, reply) => {
        const e = await docket.scheduler.trigger(req.params.name, {
          ...scopeOf(req),
          traceId: req.traceId,
        });
        return reply.status(202).send({ execution: executionDto(e) });
      },
    );

    app.get<{
      Querystring: {
        task?: string;
        status?: string;
        trigger?: 'cron' | 'manual';
        cursor?: string;
        limit?: number;
      };
    }>(
      '/scheduler/executions',
      {
        schema: {
          summary: 'List task executions, newest first',
          tags: ['scheduler'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              ...pageQuerySchema,
              task: { type: 'string', minLength: 1, maxLength: 200 },
              status: statusListSchema(EXECUTION_STATUSES),
              trigger: { type: 'string', enum: ['cron', 'manual'] },
            },
          },
          response: {
            200: pageResponseSchema('TaskExecution'),
            ...errorResponses(400, 401),
          },
        },
      },
      async (req) => {
        const q = req.query;
        const page = await docket.scheduler.executions(
          {
            task: q.task,
            status: parseStatusList<ExecutionStatus>(q.status),
            trigger: q.trigger,
            cursor: q.cursor,
            limit: q.limit,
          },
          scopeOf(req),
        );
        return { items: page.items.map(executionDto), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      '/scheduler/executions/:id',
      {
        schema: {
          summary: 'Get a task execution',
          tags: ['scheduler'],
          params: jobIdParamsSchema('id'),
          response: {
            200: { type: 'object', properties: { execution: { $ref: 'TaskExecution#' } } },
            ...errorResponses(401, 404),
          },
        },
      },
      async (req) => ({
        execution: executionDto(await docket.scheduler.execution(req.params.id, scopeOf(req))),
      }),
    );

    app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
      '/scheduler/executions/:id/cancel',
      {
        schema: {
          summary:
            'Cancel a running execution (audited); its instance aborts the handler within a tick',
          tags: ['scheduler'],
          params: jobIdParamsSchema('id'),
          body: {
            type: ['object', 'null'],
            additionalProperties: false,
            properties: { reason: { type: 'string', minLength: 1, maxLength: 500 } },
          },
          response: {
            200: { type: 'object', properties: { execution: { $ref: 'TaskExecution#' } } },
            ...errorResponses(400, 401, 404, 409),
          },
        },
      },
      async (req) => ({
        execution: executionDto(
          await docket.scheduler.cancelExecution(req.params.id, {
            ...scopeOf(req),
            traceId: req.traceId,
            reason: req.body?.reason,
          }),
        ),
      }),
    );

    app.get<{ Querystring: { task?: string; windowMs?: number } }>(
      '/scheduler/stats',
      {
        schema: {
          summary: 'Per-task stats over a window (default 24 h)',
          tags: ['scheduler'],
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              task: { type: 'string', minLength: 1, maxLength: 200 },
              windowMs: { type: 'integer', minimum: 1, maximum: 31_536_000_000 },
            },
          },
          response: {
            200: {
              type: 'object',
              properties: { items: { type: 'array', items: { $ref: 'TaskStats#' } } },
            },
            ...errorResponses(400, 401, 404),
          },
        },
      },
      async (req) => ({
        items: (
          await docket.scheduler.stats({
            ...scopeOf(req),
            task: req.query.task,
            windowMs: req.query.windowMs,
          })
        ).map(statsDto),
      }),
    );
  };
}
