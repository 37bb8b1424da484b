"""Plant extreme lengths at every position of every example request; decode each.

Run as a child process under an address-space limit by test_kafka_shape.py:
a decoder that reserves memory by a count the client sent aborts the whole
process (kio's native code), which the test sees as a non-zero exit. Prints
how many frames it decoded.
"""

from __future__ import annotations

import resource
import struct
import sys

from kafka_codec_support import example_request_frames

from trioring.errors import ProtocolError
from trioring.protocol.kafka import decode_request, is_flexible

#: Legacy counts and lengths (int32 and int16) at their extremes.
LEGACY = [struct.pack(">i", 0x7FFFFFFF), struct.pack(">i", 0x40000000), b"\x7f\xff"]
#: Compact counts and lengths: the largest 32-bit unsigned varints.
COMPACT = [b"\xff\xff\xff\xff\x0f", b"\xfe\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x04"]


def main() -> int:
    limit_bytes = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    decoded = 0
    for api_key, api_version, frame in example_request_frames():
        plants = COMPACT if is_flexible(api_key, api_version) else LEGACY
        # Past the api key and version (an unknown pair never reaches a body).
        for position in range(4, len(frame)):
            for plant in plants:
                for mutated in (
                    frame[:position] + plant + frame[position + len(plant) :],
                    frame[:position] + plant + frame[position:],
                ):
                    try:
                        request = decode_request(mutated)
                    except ProtocolError:
                        continue
                    assert request.error is None or isinstance(request.error, ProtocolError)
                    decoded += 1
    print(decoded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
