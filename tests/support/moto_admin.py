"""Admin and oracle calls against a running moto server, for tests/support/src/moto.rs.

Uses boto3/botocore (installed with moto) so that the test's view of the stream is
signed by an implementation independent of the extension's own SigV4 code: a signing
bug in the extension cannot hide by being mirrored in the reader.

Every command prints one JSON object on stdout. The endpoint comes from argv; the
region and credentials from the usual AWS_* environment variables.

  setup ENDPOINT STREAM SHARDS USER   (auth must still be off) create USER, an access
        key and an inline policy allowing kinesis:*, and STREAM with SHARDS shards
        -> {"AccessKeyId", "SecretAccessKey", "UserArn", "StreamARN"}
  read ENDPOINT STREAM                every record of every shard, from TRIM_HORIZON
        -> {"Records": [{"ShardId", "SequenceNumber", "PartitionKey", "DataHex"}]}
  put ENDPOINT STREAM PARTITION_KEY DATA_HEX   one raw SigV4-signed PutRecords
        -> {"Status": <http status>, "Body": "<response body>"}
"""

import binascii
import json
import os
import sys
import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials

KINESIS_ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"}],
}
# GetRecords pages: moto returns everything at once, this only bounds a broken loop.
MAX_GET_RECORDS_CALLS_PER_SHARD = 1000


def client(service, endpoint):
    # No retries: a rejected request must surface, not be retried into a pass.
    cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client(service, endpoint_url=endpoint, config=cfg)


def setup(endpoint, stream, shards, user):
    iam = client("iam", endpoint)
    user_arn = iam.create_user(UserName=user)["User"]["Arn"]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    iam.put_user_policy(
        UserName=user,
        PolicyName="kinesis-all",
        PolicyDocument=json.dumps(KINESIS_ALLOW_ALL),
    )
    kinesis = client("kinesis", endpoint)
    kinesis.create_stream(StreamName=stream, ShardCount=int(shards))
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.05, "MaxAttempts": 100}
    )
    arn = kinesis.describe_stream_summary(StreamName=stream)[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    return {
        "AccessKeyId": key["AccessKeyId"],
        "SecretAccessKey": key["SecretAccessKey"],
        "UserArn": user_arn,
        "StreamARN": arn,
    }


def read(endpoint, stream):
    kinesis = client("kinesis", endpoint)
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(MAX_GET_RECORDS_CALLS_PER_SHARD):
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for rec in page["Records"]:
                out.append(
                    {
                        "ShardId": shard_id,
                        "SequenceNumber": rec["SequenceNumber"],
                        "PartitionKey": rec["PartitionKey"],
                        "DataHex": binascii.hexlify(rec["Data"]).decode(),
                    }
                )
            iterator = page.get("NextShardIterator")
            if not iterator or (not page["Records"] and page.get("MillisBehindLatest", 0) == 0):
                break
        else:
            raise SystemExit("GetRecords never caught up on %s" % shard_id)
    return {"Records": out}


def put(endpoint, stream, partition_key, data_hex):
    """One PutRecords, signed here and sent raw so the exact status and body show."""
    data = binascii.unhexlify(data_hex)
    body = json.dumps(
        {
            "StreamName": stream,
            "Records": [
                {"Data": binascii.b2a_base64(data, newline=False).decode(), "PartitionKey": partition_key}
            ],
        }
    )
    request = botocore.awsrequest.AWSRequest(
        method="POST",
        url=endpoint.rstrip("/") + "/",
        data=body.encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "Kinesis_20131202.PutRecords",
        },
    )
    creds = botocore.credentials.Credentials(
        os.environ["AWS_ACCESS_KEY_ID"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
        os.environ.get("AWS_SESSION_TOKEN"),
    )
    botocore.auth.SigV4Auth(creds, "kinesis", os.environ["AWS_DEFAULT_REGION"]).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(
        prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(raw, timeout=10) as resp:
            return {"Status": resp.status, "Body": resp.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as err:
        return {"Status": err.code, "Body": err.read().decode("utf-8", "replace")}


COMMANDS = {"setup": (setup, 4), "read": (read, 2), "put": (put, 4)}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) - 2 != COMMANDS[argv[1]][1]:
        raise SystemExit(__doc__)
    func, _ = COMMANDS[argv[1]]
    json.dump(func(*argv[2:]), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
