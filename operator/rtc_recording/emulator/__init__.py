"""A stand-in for the ApsaraVideo Live recording API: the other side of the wire.

It speaks the vendor's wire protocol (RPC style, parameters in the query, object
parameters as JSON, ACS3-HMAC-SHA256 or v2 HMAC-SHA1 signatures) for
StartRtcCloudRecording, StopRtcCloudRecording, UpdateRtcCloudRecording and
DescribeRtcCloudRecordingFiles, with the vendor's StartRtcCloudRecording page's validation, error codes and HTTP
statuses, a task lifecycle over a scalable clock, idle timeouts driven by a channel
activity model, the per-AccessKey quota, NotifyUrl callbacks and injectable faults. It
imports nothing from the rest of `rtc_recording`.

    from rtc_recording.emulator import EmulatorConfig, run_in_thread
    with run_in_thread(EmulatorConfig(access_keys={"AK": "secret"}, apps={"app"},
                                      oss_buckets={"bucket"}, time_scale=60)) as emu:
        emu.control.join("app", "room", "alice")     # Start needs someone in the channel
        ...  # point the SDK at emu.url (protocol http)

CLI: `python -m rtc_recording.emulator --port 0 --access-key ID:SECRET --app APP
--bucket B [--account ID:ACCOUNT] [--time-scale 60] [--open-channels] [--strict-ids] ...`
prints its URL as the first line.

Accounts: every AccessKeyId (plain or STS) belongs to an account: `accounts` in the config
(`--account ID:ACCOUNT`, or `accounts` in POST /_emulator/credentials) names it, and keys
named nowhere belong to account "default" (so by default all keys share their tasks). A
task belongs to the account whose key started it; Describe, Update and Stop with a key of
another account answer `NotFound.Task` (400), exactly as for a TaskId that never existed,
whatever the task's state: the service does not tell another account that it exists.
Apps and buckets are shared by all accounts. The quota stays per AccessKeyId.

Request size: parameters come in the query string; a request target (path and query) of
up to 256 KiB is received (`server.MAX_REQUEST_TARGET`: NotifyUrl plus 40 other 2048-
character URLs, percent-encoded), a longer one is answered 400 `RequestTooLarge` with the
vendor's error body (the code is the emulator's own; the vendor publishes none).

OSS (path-style, as a client sends to http://127.0.0.1:<port>): GET (or HEAD)
/<bucket>/<key> serves the objects the tasks wrote (`objects.py`: playlists, MP4 and MP3
files once Describe lists them, HLS slices once complete; small stubs that carry their
key) behind links presigned as the vendor's OSS SDK presigns them (`oss.py`, signature
V4), checked against the emulator's AccessKeys and STS tokens, with OSS's XML errors: 403
AccessDenied "Request has expired." once the link clock (real time plus every advance)
passes the link's x-oss-date + x-oss-expires, 403 SignatureDoesNotMatch when anything
signed was changed, 404 NoSuchBucket or NoSuchKey. Unsigned requests are refused (buckets
are private).

Control API (JSON bodies; `EmulatorControl` wraps it; errors: 400 bad input, 404
unknown task/user, 409 task not running):

    GET  /_emulator/health                   {ok, now (emulated Unix s), region, timeScale}
    POST /_emulator/reset                    everything back to the config (clock keeps time)
    POST /_emulator/advance                  {seconds} -> {now}: jump emulated time
    GET  /_emulator/channels                 {channels: [{appId, channelId, users: {userId: [tracks]}}]}
    POST /_emulator/channels/join            {appId, channelId, userId, tracks=["audio","camera"]}
    POST /_emulator/channels/leave           {appId, channelId, userId}
    POST /_emulator/channels/publish         {appId, channelId, userId, tracks=["audio","camera"]} (adds)
    POST /_emulator/channels/unpublish       {appId, channelId, userId, tracks=all} (removes)
    GET  /_emulator/tasks?appId=&channelId=&status=&account=&accessKeyId=
                                             {tasks: [{taskId, appId, channelId, status, stopReason,
                                              accessKeyId, account, createdAt, stoppedAt, vanished,
                                              expired, params, subscribers, layout, updates, history,
                                              files}]}
    GET  /_emulator/tasks/{taskId}           one task, same shape
    POST /_emulator/tasks/{taskId}/recover   {seconds}: RECOVERING for that long, then RUNNING
    POST /_emulator/tasks/{taskId}/vanish    the service forgets it (API: NotFound.Task)
    GET|POST /_emulator/faults               {latency_seconds, error_rates: {action|"*": rate},
                                              drop_start_rate, callbacks, quota_per_second,
                                              throttle_status}; POST changes the given ones and,
                                              with revert_after_seconds: N (> 0), puts each of them
                                              back N real seconds later unless changed meanwhile
    GET|POST /_emulator/hang                 POST {seconds}: hang for that many real seconds from
                                              now (replacing a hang under way; 0 ends it now);
                                              -> {active, remainingSeconds, waiting, held}
    GET  /_emulator/stats                    {calls: {total, byAction, byAccessKeyId,
                                              byAccessKeyIdAndAction, byActionAndCode, byUserAgent},
                                              throttled: {total, byAccessKeyId},
                                              droppedStartAnswers, tooLarge,
                                              liveTasks: {total, byAccount: {account: [taskId]}},
                                              callbacks: (as counts below), hang: (as above)}
    POST /_emulator/stats/reset              zero the counters (tasks, channels, knobs stay) -> stats
    GET|POST /_emulator/callbacks            POST {enabled}; -> {enabled, counts: {queued, suppressed,
                                              delivered, failed, pending, attempts, byEventType:
                                              {type: {outcome: n}}}, deliveries: [{taskId, eventType,
                                              url, payload, at, attempts, delivered}] (the last 10 000)}
    POST /_emulator/credentials              {access_keys, sts_tokens: {id: [secret, token]},
                                              sts_expires_at: {id: unix s}, revoke: [ids],
                                              accounts: {id: account}}

Fault knobs, for the operator's tests:
- latency: `latency_seconds` delays every API answer; the call is still executed after
  the delay, even if the caller gave up.
- 5xx: `error_rates` answers that share of calls (per action or "*") InternalError (500)
  or ServiceUnavailable (503); the call does nothing. An outage or brown-out is
  `{"error_rates": {"*": 1.0}, "revert_after_seconds": 60}`: 100% 5xx for 60 s.
- lost Start answers: `drop_start_rate`: the task is created and runs, the connection is
  closed unanswered.
- hang: POST /_emulator/hang {seconds}: connections are accepted and nothing is answered;
  the calls received meanwhile are executed in arrival order when the hang ends (their
  signature's freshness and the quota judged on arrival), so a Start that timed out at
  the client creates its task late. The control API, tasks and callbacks keep running.
- quota: `quota_per_second`, `throttle_status` (Throttling.User).
- callbacks: `callbacks` false suppresses (and counts) them.
Counters: GET /_emulator/stats counts every API call once it is answered (a held call when
the hang ends), by action, by AccessKeyId (the verified one, else "(unauthenticated)"),
by action and answer ("OK" or the error code) and by User-Agent, the Throttling.User
answers by key, the Start answers dropped, the requests refused as too large, the live
tasks of each account and the callbacks' outcomes.

Tracks are "audio", "camera", "screen". Emulated time drives tasks, files and callbackTs;
signature dates, ALI-LIVE-TIMESTAMP and the quota window use real time.

Decisions where the vendor publishes nothing: Throttling.User answers HTTP 400 (the
classic table; `throttle_status` makes it 429); a dropped Start creates and runs the task,
then closes the connection without an answer (the client sees a connection error: an
unknown outcome); without NotifyFileUploadedFormat no RecordFileUploaded is sent for OSS;
VOD storage sends one per media file (the format filter is OSS-only); a stopped task stays
visible for 3 days after it stopped.
"""

from .config import EmulatorConfig, FaultKnobs
from .control import EmulatorControl, EmulatorError
from .runner import EmulatorHandle, run_in_thread
from .server import create_app

__all__ = [
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorError",
    "EmulatorHandle",
    "FaultKnobs",
    "create_app",
    "run_in_thread",
]
