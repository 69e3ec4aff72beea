"""The wire shape of protobuf files as plain JSON-able data: every message (nested and map entries included)
with each field's number, type, label and message/enum type, every enum's values, every RPC's signature.

Imports only google.protobuf, so the test process (our `inference` stubs) and a tritonclient subprocess (Triton's
`inference` stubs; the two cannot share a process) describe their protocols with the same code.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor


def _enum(enum: EnumDescriptor) -> dict[str, int]:
    return {value.name: value.number for value in enum.values}


def _message(message: Descriptor, messages: dict[str, Any], enums: dict[str, Any]) -> None:
    fields = {}
    for f in message.fields:
        type_name = (f.message_type or f.enum_type).full_name if (f.message_type or f.enum_type) else ""
        oneof = f.containing_oneof.name if f.containing_oneof is not None else ""
        repeated = f.is_repeated
        fields[f.name] = {"number": f.number, "type": f.type, "repeated": repeated, "type_name": type_name}
        if oneof:
            fields[f.name]["oneof"] = oneof
    messages[message.full_name] = fields
    for enum in message.enum_types:
        enums[enum.full_name] = _enum(enum)
    for nested in message.nested_types:
        _message(nested, messages, enums)


def describe(files: list[FileDescriptor]) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    methods: dict[str, Any] = {}
    for file in files:
        for enum in file.enum_types_by_name.values():
            enums[enum.full_name] = _enum(enum)
        for message in file.message_types_by_name.values():
            _message(message, messages, enums)
        for service in file.services_by_name.values():
            for m in service.methods:
                methods[f"{service.full_name}/{m.name}"] = {
                    "input": m.input_type.full_name,
                    "output": m.output_type.full_name,
                    "client_streaming": m.client_streaming,
                    "server_streaming": m.server_streaming,
                }
    return {"messages": messages, "enums": enums, "methods": methods}
