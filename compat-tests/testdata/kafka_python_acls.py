"""kafka-python's admin client against Tusk's ACL APIs (compat-tests
acl_test.go): create two ACLs, describe them with a MATCH filter, delete
one, describe again; prints one JSON object with what each step returned.

usage: kafka_python_acls.py BOOTSTRAP
"""
import json
import sys

from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                         ACLResourcePatternType, KafkaAdminClient,
                         ResourcePattern, ResourcePatternFilter, ResourceType)


def row(acl):
    return {
        "principal": acl.principal,
        "host": acl.host,
        "operation": acl.operation.name,
        "permission": acl.permission_type.name,
        "resource_type": acl.resource_pattern.resource_type.name,
        "resource_name": acl.resource_pattern.resource_name,
        "pattern": acl.resource_pattern.pattern_type.name,
    }


def main():
    admin = KafkaAdminClient(bootstrap_servers=sys.argv[1], client_id="kafka-python-acls",
                             request_timeout_ms=20000)
    group_read = ACL(principal="User:ANONYMOUS", host="*", operation=ACLOperation.READ,
                     permission_type=ACLPermissionType.ALLOW,
                     resource_pattern=ResourcePattern(ResourceType.GROUP, "py-",
                                                      ACLResourcePatternType.PREFIXED))
    carol = ACL(principal="User:carol", host="*", operation=ACLOperation.DESCRIBE,
                permission_type=ACLPermissionType.DENY,
                resource_pattern=ResourcePattern(ResourceType.TOPIC, "py-topic",
                                                 ACLResourcePatternType.LITERAL))
    created = admin.create_acls([group_read, carol])
    out = {"created": len(created["succeeded"]), "create_failed": [str(e) for _, e in created["failed"]]}

    match = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                      permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(ResourceType.ANY, "py-group",
                                                             ACLResourcePatternType.MATCH))
    acls, err = admin.describe_acls(match)
    out["match_py_group"] = sorted((row(a) for a in acls), key=lambda r: json.dumps(r, sort_keys=True))
    out["describe_error"] = err.__name__ if hasattr(err, "__name__") else str(err)

    delete = ACLFilter(principal="User:carol", host=None, operation=ACLOperation.ANY,
                       permission_type=ACLPermissionType.ANY,
                       resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, None,
                                                              ACLResourcePatternType.ANY))
    deleted = []
    for _, matches, exc in admin.delete_acls([delete]):
        if exc is not None and getattr(exc, "__name__", "") != "NoError":
            deleted.append({"error": str(exc)})
        for acl, err in matches:
            r = row(acl)
            r["error"] = err.__name__ if hasattr(err, "__name__") else str(err)
            deleted.append(r)
    out["deleted"] = deleted

    everything = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                           permission_type=ACLPermissionType.ANY,
                           resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                                  ACLResourcePatternType.ANY))
    acls, _ = admin.describe_acls(everything)
    out["all_after"] = sorted((row(a) for a in acls), key=lambda r: json.dumps(r, sort_keys=True))
    admin.close()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
