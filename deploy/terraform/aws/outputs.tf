output "queue_url" {
  description = "sources[].queue_url of the aws_s3_sqs source."
  value       = aws_sqs_queue.notifications.id
}

output "dead_letter_queue_url" {
  description = "Notifications received 5 times without being deleted land here: alert on its depth."
  value       = aws_sqs_queue.dlq.id
}

output "bucket" {
  description = "The trail bucket (aws_s3 backfill source)."
  value       = aws_s3_bucket.trail.id
}

output "reader_role_arn" {
  description = "The role kmswatch runs as."
  value       = aws_iam_role.kmswatch.arn
}

output "responder_role_arn" {
  description = "respond.aws.accounts.<account>.role_arn (null without responder principals)."
  value       = local.responder ? aws_iam_role.responder[0].arn : null
}

output "log_key_arn" {
  description = "The key encrypting the trail, bucket and queues."
  value       = module.log_key.key_arn
}

output "kmswatch_config" {
  description = "The source and respond sections for kmswatch.yml."
  value = yamlencode({
    sources = [{ id = "cloudtrail", type = "aws_s3_sqs", queue_url = aws_sqs_queue.notifications.id, region = local.region }]
    respond = local.responder ? { aws = { accounts = { (local.account) = { role_arn = aws_iam_role.responder[0].arn } } } } : null
  })
}
