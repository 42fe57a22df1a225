/**
 * `@coffer/failover`: deciding failover through an object store. Observers
 * probe and vote; the first to write the next epoch's leader record decides;
 * each database host's guard holds the primary's lease under a watchdog,
 * fences its server when it must, and promotes it when it is named. See
 * docs/FAILOVER.md for the protocol and why it is safe.
 */
export type { DecisionBackend, PrimaryLease, LeaseWatch, ClaimOutcome } from './decision-backend.js';
export { ObjectStoreDecisions } from './object-store-decisions.js';
export { validateName, leaderKey, voteKey, epochPrefix, type LeaderRecord, type LeaderReason, type VoteRecord, type Verdict } from './decision-records.js';
export { majority, tally, type Tally } from './quorum.js';
export { FailureDetector, type FailureDetectorOptions, type Health } from './failure-detector.js';
export { probePrimary, standbyState, type ProbeTarget, type ProbeResult, type StandbyState } from './health-probe.js';
export { fenceServer, markStandby, processesIn, type FenceReport } from './fence.js';
export { Watchdog } from './watchdog.js';
export { Guard, DEFAULT_PRIMARY_TTL_MS, type GuardOptions, type GuardEvent, type GuardEventKind } from './guard.js';
export { Observer, chooseCandidate, type ObserverOptions, type ObserverEvent, type ObserverEventKind, type FailoverNode, type Candidate } from './observer.js';
export { initFailover } from './init.js';
export { localServer, promoteServer, type LocalServer } from './local-server.js';
export { monotonicMs } from './monotonic.js';
export { failoverStatus, type FailoverStatus } from './status.js';
export { nodeStates, type NodeState } from './node-states.js';
export { DnsCutover, CommandCutover, WebhookCutover, rejoinCommand, runHook, type CutoverStep } from './cutover.js';
export { pointName, DnsUpdateError, type DnsUpdateTarget, type TsigKey, type TsigAlgorithm } from './dns-update.js';
export { failoverReport, reportMarkdown, reportFigures, type FailoverReport } from './failover-report.js';
export { switchover, rejoin, type RejoinOptions } from './switchover.js';
export { standbyConninfo, repointedConninfo, followPrimary, writeStandbyConfig } from './standby-config.js';
export type { ServerConnection } from './server-target.js';
export { controlData, type ClusterState } from './pg-control.js';
export type { Handover } from './decision-backend.js';
export { FailsafePromises, type FailsafePromisesOptions, type FailsafeState, type ObserverView, type PromiseAnswer } from './failsafe-promises.js';
export { FailsafeServer, type FailsafeServerOptions } from './failsafe-server.js';
export { HttpFailsafeQuorum, FailsafeMajorityError, type FailsafeQuorum, type HttpFailsafeQuorumOptions, type PromiseRound, type CloseRound } from './failsafe-quorum.js';
