from protos.hermes_fed.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendEventsRequest(_message.Message):
    __slots__ = ("events", "expected_versions")
    class ExpectedVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.EventEnvelope]
    expected_versions: _containers.ScalarMap[str, int]
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.EventEnvelope, _Mapping]]] = ..., expected_versions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ("event_id", "position", "stream_version", "duplicate")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    position: int
    stream_version: int
    duplicate: bool
    def __init__(self, event_id: _Optional[str] = ..., position: _Optional[int] = ..., stream_version: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppendResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AppendResult, _Mapping]]] = ...) -> None: ...

class ReadStreamRequest(_message.Message):
    __slots__ = ("stream_id", "after_position", "limit")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_POSITION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    after_position: int
    limit: int
    def __init__(self, stream_id: _Optional[str] = ..., after_position: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class Arm(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class AssignVariantRequest(_message.Message):
    __slots__ = ("ab_test_id", "user_ref", "arms")
    AB_TEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_REF_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    ab_test_id: str
    user_ref: str
    arms: _containers.RepeatedCompositeFieldContainer[Arm]
    def __init__(self, ab_test_id: _Optional[str] = ..., user_ref: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ...) -> None: ...

class AssignVariantResponse(_message.Message):
    __slots__ = ("variant", "bucket", "event_id", "position", "duplicate")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    variant: str
    bucket: float
    event_id: str
    position: int
    duplicate: bool
    def __init__(self, variant: _Optional[str] = ..., bucket: _Optional[float] = ..., event_id: _Optional[str] = ..., position: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...
