"""De-aggregates Kinesis records with AWS's own module, for the black-box tests.

    python kpl_deaggregate.py < records.json

stdin:  a JSON array of {"PartitionKey": "...", "Data": "<base64>"}, the records as
        Kinesis stores them.
stdout: a JSON array of {"PartitionKey": "...", "Data": "<base64>"}, one per user
        record, in order: the sub-records of each KPL aggregated record, or a plain
        record as it is.
On any error: a message on stderr and exit status 1 (nothing on stdout).

The records go through `aws_kinesis_agg.deaggregator` (PyPI `aws-kinesis-agg`,
installed into the repo's .venv by .ci/python-tools.sh) in the shape a Lambda
function gets from a Kinesis event source mapping, which is what that module is for.

The module is lenient where a test must not be, so this script checks around it:
  * data that starts with the KPL magic but whose MD5 does not match, or whose
    protobuf does not parse, is handed back silently as ONE PLAIN RECORD (the KCL
    does the same): a corrupt aggregated record would look like a delivered event;
  * an exception while splitting the sub-records (e.g. a partition key index out
    of range) is printed to stderr and the remaining sub-records are dropped.
Every record that starts with the magic must therefore have a good digest, parse,
have every `required` field, and come back as exactly as many user records as its
protobuf holds.
"""

import base64
import binascii
import contextlib
import hashlib
import io
import json
import sys


def fail(message):
    print("kpl_deaggregate.py: " + message, file=sys.stderr)
    sys.exit(1)


try:
    import aws_kinesis_agg
    from aws_kinesis_agg import deaggregator

    # Importable only after deaggregator has put the package dir on sys.path.
    from aws_kinesis_agg import messages_pb2
    import google.protobuf.message
except ImportError as e:
    fail("cannot import aws_kinesis_agg (%s): run `bash .ci/python-tools.sh`" % e)


def lambda_event_record(index, partition_key, data_b64):
    """One entry of a Kinesis event's `Records`, as Lambda delivers it."""
    return {
        "eventSource": "aws:kinesis",
        "eventID": "shardId-000000000000:%d" % index,
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": str(index),
            "approximateArrivalTimestamp": 0.0,
            "data": data_b64,
        },
    }


def check_aggregated(index, raw, user_records):
    """Fails unless `raw` (which starts with the magic) is a sound aggregated record
    that the module split into all of its user records."""
    body = raw[len(aws_kinesis_agg.MAGIC):]
    if len(body) <= aws_kinesis_agg.DIGEST_SIZE:
        fail("record %d starts with the KPL magic but has only %d bytes: no room for "
             "protobuf and digest (aws_kinesis_agg would pass it on as a plain record)"
             % (index, len(raw)))
    proto, digest = body[:-aws_kinesis_agg.DIGEST_SIZE], body[-aws_kinesis_agg.DIGEST_SIZE:]
    expected = hashlib.md5(proto).digest()
    if digest != expected:
        fail("record %d: MD5 mismatch: trailing digest %s, MD5 of the protobuf bytes %s "
             "(aws_kinesis_agg would silently pass it on as one plain record)"
             % (index, digest.hex(), expected.hex()))
    message = messages_pb2.AggregatedRecord()
    try:
        message.ParseFromString(proto)
    except google.protobuf.message.DecodeError as e:
        fail("record %d: the protobuf does not parse (%s); aws_kinesis_agg would silently "
             "pass it on as one plain record" % (index, e))
    if not message.IsInitialized():
        # Python's protobuf parses a Record without its `required` fields; protobuf-java
        # (the KCL's) rejects the whole message, so a test must too.
        fail("record %d: required fields missing: %s"
             % (index, ", ".join(message.FindInitializationErrors())))
    if len(user_records) != len(message.records):
        fail("record %d: aws_kinesis_agg returned %d user records, the protobuf holds %d"
             % (index, len(user_records), len(message.records)))
    for r in user_records:
        if r["kinesis"].get("aggregated") is not True:
            fail("record %d: aws_kinesis_agg did not treat it as aggregated" % index)


def main():
    try:
        records = json.load(sys.stdin)
    except ValueError as e:
        fail("stdin is not JSON: %s" % e)
    if not isinstance(records, list):
        fail("stdin must be a JSON array of records")

    out = []
    for i, record in enumerate(records):
        if (not isinstance(record, dict) or not isinstance(record.get("PartitionKey"), str)
                or not isinstance(record.get("Data"), str)):
            fail("record %d must be {\"PartitionKey\": string, \"Data\": base64 string}: %r"
                 % (i, record))
        try:
            raw = base64.b64decode(record["Data"], validate=True)
        except binascii.Error as e:
            fail("record %d: Data is not base64: %s" % (i, e))

        event_record = lambda_event_record(i, record["PartitionKey"], record["Data"])
        module_stderr = io.StringIO()
        with contextlib.redirect_stderr(module_stderr):
            user_records = list(deaggregator.iter_deaggregate_records([event_record]))
        if module_stderr.getvalue():
            fail("record %d: aws_kinesis_agg reported: %s" % (i, module_stderr.getvalue().strip()))

        if raw.startswith(aws_kinesis_agg.MAGIC):
            check_aggregated(i, raw, user_records)
        elif len(user_records) != 1 or user_records[0]["kinesis"]["data"] != record["Data"]:
            fail("record %d: a plain record did not come back as it went in" % i)

        for r in user_records:
            data = r["kinesis"]["data"]
            if isinstance(data, bytes):  # the module re-encodes sub-records as bytes
                data = data.decode("ascii")
            out.append({"PartitionKey": r["kinesis"]["partitionKey"], "Data": data})

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
