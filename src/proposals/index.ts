// Proposals, confirm-before-apply (SPEC S-7): the public face of the proposals capability.
export {
  ProposalsService,
  resolveProposalsOptions,
  type ProposalsDeps,
  type ProposalsOptions,
} from './service.js';
export * from './types.js';
