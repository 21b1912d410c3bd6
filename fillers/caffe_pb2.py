"""The message classes of fillers' Caffe schema (proto/fillers/caffe.proto, package ``fillers.caffe``).

The module reads as protoc's generated code does (``caffe_pb2.NetParameter``, ``caffe_pb2.FillerParameter.FAN_IN``,
``caffe_pb2.TRAIN``, ``caffe_pb2.DESCRIPTOR``), but it is not generated: it builds the classes at import from the
serialized ``FileDescriptorProto`` that the build wrote to ``fillers/_caffe_descriptor.py``, with public protobuf
API only. Generated code requires a protobuf runtime at least as new as the protoc that wrote it; this module runs
on every runtime the package supports (see the ``protobuf`` bound in pyproject.toml).

The schema is registered as file ``fillers/caffe.proto`` in package ``fillers.caffe``, so it never clashes with
Caffe's own ``caffe.proto`` (package ``caffe``) that pycaffe and model converters load into the same default pool.
Text and binary formats do not carry the package name: files read and write exactly as with Caffe's schema, and
:func:`as_message` takes a message of another ``caffe_pb2`` through its serialized bytes.
"""
from __future__ import annotations

from typing import TypeVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from fillers._caffe_descriptor import FILE_DESCRIPTOR

M = TypeVar("M", bound=Message)

descriptor_pool.Default().AddSerializedFile(FILE_DESCRIPTOR)  # returns the file only from protobuf 3.19 on
DESCRIPTOR = descriptor_pool.Default().FindFileByName("fillers/caffe.proto")
_SCHEMA = descriptor_pb2.FileDescriptorProto.FromString(FILE_DESCRIPTOR)


def _class_maker():
    """``message_factory.GetMessageClass`` (protobuf >= 4.22), else the older ``MessageFactory.GetPrototype``."""
    get_message_class = getattr(message_factory, "GetMessageClass", None)
    if get_message_class is not None:
        return get_message_class
    return message_factory.MessageFactory(descriptor_pool.Default()).GetPrototype


def _build_module() -> None:
    """Bind every top-level message class and top-level enum value as a module attribute, as generated code does.

    Nested enums (``FillerParameter.VarianceNorm``, ``FillerParameter.FAN_IN``) are attributes of their message
    class in every protobuf runtime; the schema has no nested messages.
    """
    message_class = _class_maker()
    for name, descriptor in DESCRIPTOR.message_types_by_name.items():
        globals()[name] = message_class(descriptor)
    for enum in DESCRIPTOR.enum_types_by_name.values():
        for value in enum.values:
            globals()[value.name] = value.number


_build_module()

_REPEATED = frozenset(
    f"{_SCHEMA.package}.{message.name}.{field.name}"
    for message in _SCHEMA.message_type
    for field in message.field
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
)


def is_repeated(field: FieldDescriptor) -> bool:
    """True if ``field``, a field of this schema, is repeated.

    ``FieldDescriptor.label`` is gone from protobuf 7 and ``FieldDescriptor.is_repeated`` is missing from older
    runtimes; the schema's own ``FileDescriptorProto`` says it in every version.
    """
    return field.full_name in _REPEATED


def caffe_name(descriptor: Descriptor) -> str:
    """The name Caffe users know a message or enum of this schema by: ``caffe.LayerParameter``."""
    return descriptor.full_name[len("fillers."):]


def as_message(value: Message, message_class: type[M]) -> M:
    """``value`` as a ``message_class`` of this schema.

    Parameters
    ----------
    value : google.protobuf.message.Message
        A ``message_class``, returned as it is; or the message of the same name from another schema (pycaffe's
        ``caffe_pb2``, a converter's, a fork's), converted through its serialized bytes. Fields this schema does
        not know stay as unknown fields.
    message_class : type
        A message class of this module, e.g. ``NetParameter``.

    Returns
    -------
    message_class

    Raises
    ------
    TypeError
        If ``value`` is not a protobuf message named like ``message_class``.
    """
    if isinstance(value, message_class):
        return value
    name = message_class.DESCRIPTOR.name
    if not isinstance(value, Message) or value.DESCRIPTOR.name != name:
        what = value.DESCRIPTOR.full_name if isinstance(value, Message) else type(value).__name__
        raise TypeError(f"expected a {name} message, not {what}")
    return message_class.FromString(value.SerializePartialToString())
