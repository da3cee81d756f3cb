"""A long-lived ClientApp worker for ``flower-supernode --isolation process``.

In Flower 1.42 every message a SuperNode receives becomes a *task*; with the default
``--isolation subprocess`` the SuperNode's ``flower-superexec`` starts a fresh
``flwr-clientapp`` process per task, which pays Python start-up plus importing torch,
transformers and peft (seconds on a small CPU) for every message. With
``--isolation process`` the SuperNode starts no executor and waits for one to acquire tasks
from its Runtime API. This worker is that executor: it imports the ClientApp and the
training stack once, then loops ``AcquireTask`` and runs each task *in this process* with
the same steps as ``flwr.supernode.runtime.run_clientapp`` (pull input, run the app, push
the reply and the task output), without exiting in between.

Trade-offs (measured in ``bench/federation``): it saves the per-message start-up; it runs
the code installed in this environment (the FAB's copy is installed but the already
imported modules win), so restart it after changing the app; tasks run one at a time.
Uses Flower internals (``flwr.supernode.runtime.run_clientapp``), pinned to flwr 1.42.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_WARM_IMPORTS = ("torch", "transformers", "peft", "tenant_node.flower.client_app",
                 "hermes_fed.training.trainer", "hermes_fed.training.evaluation")


def _warm_up() -> float:
    import importlib

    started = time.perf_counter()
    for name in _WARM_IMPORTS:
        importlib.import_module(name)
    return time.perf_counter() - started


def task_heartbeat_fn(client: Any) -> Callable[[], bool]:
    """A task heartbeat for a worker that outlives its tasks.

    Flower's ``make_task_heartbeat_fn_http`` raises SIGINT in the process when the SuperNode
    rejects a heartbeat (the task was finished or its run failed): right for a one-task
    ``flwr-clientapp`` process, fatal here, where SIGINT stops the worker and every later
    run of the federation then waits for an executor that never comes. This one logs the
    rejection and stops retrying; the task's own pushes then fail and it is reported failed.
    An HTTP error status is a missed beat to retry (with Flower's backoff), never an
    exception that would end the heartbeat thread.
    """
    import httpx
    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest

    request = SendTaskHeartbeatRequest()

    def send() -> bool:
        try:
            res = client.SendTaskHeartbeat(request)
        except httpx.TransportError:
            return False
        except httpx.HTTPStatusError as err:
            # Flower retries only 503 and 504 and raises on the rest, which kills the
            # heartbeat thread for good; a 500 from a SuperNode whose SQLite state was
            # briefly locked is just as transient, so every status error is a missed beat.
            logger.warning("task heartbeat answered HTTP %d; retrying",
                           err.response.status_code)
            return False
        if not res.success:
            logger.warning("the SuperNode rejected this task's heartbeat (task finished or "
                           "run failed); the worker keeps serving")
        return True

    return send


def pull_task_input(client: Any, retry_s: float) -> tuple[Any, Any, Any, Any]:
    """Flower's ``run_clientapp.pull_task_input`` with the first retry after ``retry_s``.

    The SuperNode creates the task as soon as a message's head arrives and pulls its
    objects from the SuperLink afterwards; an object asked for before it is there is
    retried with backoff, which Flower starts at 1 s (``PULL_INITIAL_BACKOFF``) and
    doubles, so tasks waited up to seconds for objects that were there a few hundred ms
    later (see ``bench/flower/exchange.py --trace``). Here the retries are every
    ``retry_s``: cheap, they go to this machine's SuperNode. Same steps otherwise.
    """
    from flwr.app import Message
    from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
    from flwr.proto.node_pb2 import Node
    from flwr.proto.runtime_pb2 import PullAppMessagesRequest, PullTaskInputRequest
    from flwr.supercore.inflatable.inflatable_protobuf_utils import (
        make_confirm_message_received_fn_protobuf,
        make_pull_object_fn_protobuf,
    )
    from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
    from flwr.supercore.task_identity import TaskIdentity

    res = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id = res.task_id
    TaskIdentity.run_id = res.run.run_id
    TaskIdentity.node_id = res.context.node_id
    context = context_from_proto(res.context)
    run = run_from_proto(res.run)
    fab = fab_from_proto(res.fab)
    pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("No messages received from Runtime API")
    node = Node(node_id=context.node_id)
    tree = pulled.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree, make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(client.ConfirmMessageReceived, node,
                                                   context.run_id),
        return_type=Message, initial_backoff=retry_s, backoff_cap=retry_s)
    message.metadata.__dict__["_message_id"] = tree.object_id
    return message, context, run, fab


def run_task(runtime_api_address: str, token: str, *, retry_s: float = 0.2) -> str:
    """Run one ClientApp task in this process; returns Flower's sub-status.

    ``retry_s``: first wait before asking again for message objects the SuperNode does not
    hold yet (:func:`pull_task_input`).
    """
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.cli.install import install_from_fab
    from flwr.clientapp.client_app import LoadClientAppError
    from flwr.clientapp.utils import get_load_client_app_fn
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_api_address, insecure=True, root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                      RuntimeTokenHttpInterceptor(token)],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    heartbeat = HeartbeatSender(task_heartbeat_fn(client))
    heartbeat.start()
    message = reply = context = None
    sub_status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, run, fab = pull_task_input(client, retry_s)
        install_from_fab(fab.content, skip_prompt=True)
        load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
        app = load(run.fab_id, run.fab_version, fab.hash_str)
        reply = app(message=message, context=context)
        sub_status, details = SubStatus.COMPLETED, ""
    except Exception as exc:  # a failed task must not end the worker
        code = (ErrorCode.LOAD_CLIENT_APP_EXCEPTION if isinstance(exc, LoadClientAppError)
                else ErrorCode.CLIENT_APP_RAISED_EXCEPTION)
        # Same shape as Flower's own error reply; the egress mod already reduced the text.
        reason = f"{type(exc)}:<'{exc}'>"
        logger.exception("task failed")
        details = reason
        if message is not None:
            reply = Message(Error(code=code, reason=reason), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
        except Exception:
            logger.exception("push of the reply failed")
            sub_status = SubStatus.FAILED
        push_task_output(client=client, context=context, sub_status=sub_status,
                         details=details)
        if heartbeat.is_running:
            heartbeat.stop()
        client.close()
    return str(sub_status)


def serve(runtime_api_address: str, *, poll_interval: float = 0.2,
          stop: threading.Event | None = None) -> None:
    """Acquire and run ClientApp tasks from the SuperNode until ``stop`` is set."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    stop = stop or threading.Event()
    logger.info("warm_up_seconds=%.2f", _warm_up())
    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_api_address, insecure=True, root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    request = AcquireTaskRequest(supported_task_types=[str(TaskType.CLIENT_APP)])
    try:
        while not stop.is_set():
            res: Any = client.AcquireTask(request)
            if res.HasField("task") and res.token:
                started = time.perf_counter()
                status = run_task(runtime_api_address, res.token, retry_s=poll_interval)
                logger.info("task_id=%d status=%s seconds=%.2f", res.task.task_id, status,
                            time.perf_counter() - started)
            else:
                stop.wait(poll_interval)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runtime-api-address", required=True,
                        help="the SuperNode's 127.0.0.1:PORT")
    parser.add_argument("--poll-interval", type=float, default=0.2,
                        help="seconds between AcquireTask polls, and the first retry of a "
                             "message object the SuperNode does not hold yet; default 0.2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(args.runtime_api_address, poll_interval=args.poll_interval, stop=stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
