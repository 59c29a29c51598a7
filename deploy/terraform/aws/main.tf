# AWS: CloudTrail (management events, which include every KMS call; optional S3 data events)
# → S3 (SSE-KMS, versioned, access-logged, public access blocked, TLS only)
# → S3 event notifications → SQS (SSE-KMS) with a dead-letter queue
# → kmswatch (`type: aws_s3_sqs`), running as a role that can only read these.
# A separate responder role holds exactly the KMS calls of the enabled playbook actions.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  trail_arn = "arn:${local.partition}:cloudtrail:${local.region}:${local.account}:trail/${var.name}"
  bucket    = "${var.name}-cloudtrail-${local.account}"
}

# ---------------------------------------------------------------- encryption key of the pipeline

data "aws_iam_policy_document" "log_key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key; the root statement delegates to IAM policies
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key; the root statement delegates to IAM policies
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key
  statement {
    sid       = "AccountIAMPolicies"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "CloudTrailEncryptsLogs"
    actions   = ["kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:cloudtrail:arn"
      values   = ["arn:${local.partition}:cloudtrail:*:${local.account}:trail/*"]
    }
  }
  statement {
    sid       = "CloudTrailDescribesKey"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
  statement {
    sid       = "S3NotifiesEncryptedQueue"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

module "log_key" {
  source        = "./kms_key"
  name          = "${var.name}-logs"
  rotation_days = 90
  hsm           = true
  owner         = "security"
  policy        = data.aws_iam_policy_document.log_key.json
  tags          = var.tags
}

# ---------------------------------------------------------------- buckets

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target bucket; logging it to itself would loop
  #checkov:skip=CKV_AWS_144:Cross-region replication of access logs is a site decision (cost, data residency)
  #checkov:skip=CKV_AWS_145:S3 server access logging delivers only to SSE-S3 buckets, not SSE-KMS
  #checkov:skip=CKV2_AWS_62:Nothing consumes access-log object events
  bucket = "${local.bucket}-access-logs"
  tags   = var.tags
}

resource "aws_s3_bucket" "trail" {
  #checkov:skip=CKV_AWS_144:Cross-region replication of the trail is a site decision (cost, data residency); the trail is multi-region
  bucket = local.bucket
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = { trail = aws_s3_bucket.trail.id, access_logs = aws_s3_bucket.access_logs.id }
  bucket                  = each.value
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "trail" {
  bucket = aws_s3_bucket.trail.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = { trail = aws_s3_bucket.trail.id, access_logs = aws_s3_bucket.access_logs.id }
  bucket   = each.value
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "trail" {
  bucket = aws_s3_bucket.trail.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.log_key.key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_logging" "trail" {
  bucket        = aws_s3_bucket.trail.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "s3/${local.bucket}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "trail" {
  bucket = aws_s3_bucket.trail.id
  rule {
    id     = "retention"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    id     = "retention"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "trail_bucket" {
  statement {
    sid       = "CloudTrailAclCheck"
    actions   = ["s3:GetBucketAcl"]
    resources = [aws_s3_bucket.trail.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
  statement {
    sid       = "CloudTrailWrite"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.trail.arn}/AWSLogs/${local.account}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.trail.arn, "${aws_s3_bucket.trail.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "trail" {
  bucket = aws_s3_bucket.trail.id
  policy = data.aws_iam_policy_document.trail_bucket.json
}

data "aws_iam_policy_document" "access_logs_bucket" {
  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs_bucket.json
}

# ---------------------------------------------------------------- the trail

resource "aws_cloudtrail" "this" {
  #checkov:skip=CKV_AWS_252:New files are announced by S3 event notifications to SQS (below), not by the trail's SNS topic
  #checkov:skip=CKV2_AWS_10:kmswatch reads the trail from S3; a CloudWatch Logs copy is optional and costs per GB
  name                          = var.name
  s3_bucket_name                = aws_s3_bucket.trail.id
  kms_key_id                    = module.log_key.key_arn
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  enable_logging                = true

  # Management events, read and write: every KMS API call (Decrypt, GenerateDataKey... are
  # read management events) plus the calls that can blind the trail (StopLogging,
  # PutEventSelectors, DeleteTrail), which kmswatch keeps as related events.
  advanced_event_selector {
    name = "Management events (all KMS calls)"
    field_selector {
      field  = "eventCategory"
      equals = ["Management"]
    }
  }

  dynamic "advanced_event_selector" {
    for_each = length(var.s3_data_event_bucket_arns) > 0 ? [1] : []
    content {
      name = "S3 object events of watched buckets"
      field_selector {
        field  = "eventCategory"
        equals = ["Data"]
      }
      field_selector {
        field  = "resources.type"
        equals = ["AWS::S3::Object"]
      }
      field_selector {
        field       = "resources.ARN"
        starts_with = [for b in var.s3_data_event_bucket_arns : "${b}/"]
      }
    }
  }

  tags       = var.tags
  depends_on = [aws_s3_bucket_policy.trail]
}

# ---------------------------------------------------------------- notifications → SQS

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-cloudtrail-dlq"
  kms_master_key_id         = module.log_key.key_arn
  message_retention_seconds = 1209600
  tags                      = var.tags
}

resource "aws_sqs_queue" "notifications" {
  name                       = "${var.name}-cloudtrail"
  kms_master_key_id          = module.log_key.key_arn
  visibility_timeout_seconds = 300
  message_retention_seconds  = 1209600
  receive_wait_time_seconds  = 20
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = 5
  })
  tags = var.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.notifications.arn]
  })
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "S3Notifications"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.notifications.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.trail.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_sqs_queue_policy" "notifications" {
  queue_url = aws_sqs_queue.notifications.id
  policy    = data.aws_iam_policy_document.queue.json
}

resource "aws_s3_bucket_notification" "trail" {
  bucket = aws_s3_bucket.trail.id
  queue {
    queue_arn     = aws_sqs_queue.notifications.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = "AWSLogs/"
    filter_suffix = ".json.gz"
  }
  depends_on = [aws_sqs_queue_policy.notifications]
}

# ---------------------------------------------------------------- kmswatch's read-only role

data "aws_iam_policy_document" "kmswatch_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "AWS"
      identifiers = var.kmswatch_principal_arns
    }
  }
}

resource "aws_iam_role" "kmswatch" {
  name                 = "${var.name}-reader"
  description          = "kmswatch: read CloudTrail files announced on SQS; nothing else"
  assume_role_policy   = data.aws_iam_policy_document.kmswatch_trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "kmswatch" {
  statement {
    sid = "ConsumeNotifications"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [aws_sqs_queue.notifications.arn]
  }
  statement {
    sid       = "ReadTrailFiles"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.trail.arn}/AWSLogs/*"]
  }
  statement {
    sid       = "ListForBackfill"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.trail.arn]
  }
  statement {
    sid       = "DecryptTrailAndQueue"
    actions   = ["kms:Decrypt"]
    resources = [module.log_key.key_arn]
  }
}

resource "aws_iam_role_policy" "kmswatch" {
  name   = "read-cloudtrail"
  role   = aws_iam_role.kmswatch.id
  policy = data.aws_iam_policy_document.kmswatch.json
}

# ---------------------------------------------------------------- the responder role

locals {
  # The KMS calls of each playbook action and of its undo (crates/kmswatch-respond/src/aws.rs).
  responder_calls = {
    disable         = ["kms:DisableKey", "kms:EnableKey"]
    enable          = ["kms:EnableKey", "kms:DisableKey"]
    rotate          = ["kms:RotateKeyOnDemand"]
    enable_rotation = ["kms:EnableKeyRotation", "kms:DisableKeyRotation"]
    cancel_deletion = ["kms:CancelKeyDeletion", "kms:EnableKey"]
    revoke_grant    = ["kms:RevokeGrant"]
    retire_grant    = ["kms:RetireGrant"]
    tag             = ["kms:TagResource", "kms:UntagResource"]
  }
  responder_write = distinct(flatten([for a in var.responder_actions : local.responder_calls[a]]))
  responder_keys  = length(var.responder_key_arns) > 0 ? var.responder_key_arns : ["arn:${local.partition}:kms:*:${local.account}:key/*"]
  responder       = length(var.responder_principal_arns) > 0
}

data "aws_iam_policy_document" "responder_trust" {
  count = local.responder ? 1 : 0
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "AWS"
      identifiers = var.responder_principal_arns
    }
  }
}

resource "aws_iam_role" "responder" {
  count                = local.responder ? 1 : 0
  name                 = "${var.name}-respond"
  description          = "kmswatch respond: the KMS calls of the enabled playbook actions; never deletion"
  assume_role_policy   = data.aws_iam_policy_document.responder_trust[0].json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "responder" {
  #checkov:skip=CKV_AWS_356:kms:ListAliases, cloudtrail:LookupEvents and cloudtrail:ListPublicKeys have no resource-level permissions; they only read
  statement {
    sid       = "PlanReadsKeyState"
    actions   = ["kms:DescribeKey", "kms:ListResourceTags", "kms:GetKeyRotationStatus", "kms:ListGrants"]
    resources = local.responder_keys
  }
  # Corroboration (the finding's event is in CloudTrail) and digest validation (docs/response.md).
  statement {
    sid       = "CorroborateWithCloudTrail"
    actions   = ["cloudtrail:LookupEvents", "cloudtrail:ListPublicKeys"]
    resources = ["*"]
  }
  statement {
    sid       = "ReadTrailLogsAndDigests"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = [aws_s3_bucket.trail.arn, "${aws_s3_bucket.trail.arn}/AWSLogs/*"]
  }
  statement {
    sid       = "PlanReadsAliases"
    actions   = ["kms:ListAliases"]
    resources = ["*"]
  }
  statement {
    sid       = "PlaybookActions"
    actions   = local.responder_write
    resources = local.responder_keys
  }
  statement {
    sid       = "NeverBreakGlassKeys"
    effect    = "Deny"
    actions   = local.responder_write
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/kmswatch:break-glass"
      values   = ["true"]
    }
  }
  statement {
    sid    = "NeverDestroy"
    effect = "Deny"
    actions = [
      "kms:ScheduleKeyDeletion",
      "kms:DeleteImportedKeyMaterial",
      "kms:PutKeyPolicy",
      "kms:CreateGrant",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "responder" {
  count  = local.responder ? 1 : 0
  name   = "kms-playbooks"
  role   = aws_iam_role.responder[0].id
  policy = data.aws_iam_policy_document.responder.json
}
