package raygcs

// The protobuf numbers wire.go reads and writes, each named after its message
// and field. The comment after each number is the full protobuf name of what
// it numbers (more than one when one constant serves several): the fixture
// generator, testdata/gen_fixtures.py, checks every such constant of this
// package against Ray's own descriptors and writes Ray's numbers to
// testdata/fields.json, which TestFieldNumbersAreRays compares with the
// constants, so neither a typo here nor a constant added without the
// generator's check gets through.
const (
	getStateReplyState = 1 // ray.rpc.autoscaler.GetClusterResourceStateReply.cluster_resource_state

	clusterStateVersion     = 1 // ray.rpc.autoscaler.ClusterResourceState.cluster_resource_state_version
	clusterStateNodes       = 3 // ray.rpc.autoscaler.ClusterResourceState.node_states
	clusterStatePending     = 4 // ray.rpc.autoscaler.ClusterResourceState.pending_resource_requests
	clusterStateGangs       = 5 // ray.rpc.autoscaler.ClusterResourceState.pending_gang_resource_requests
	clusterStateConstraints = 6 // ray.rpc.autoscaler.ClusterResourceState.cluster_resource_constraints

	constraintRequests = 1 // ray.rpc.autoscaler.ClusterResourceConstraint.resource_requests

	nodeStateID            = 1  // ray.rpc.autoscaler.NodeState.node_id
	nodeStateAvailable     = 4  // ray.rpc.autoscaler.NodeState.available_resources
	nodeStateTotal         = 5  // ray.rpc.autoscaler.NodeState.total_resources
	nodeStateDynamicLabels = 6  // ray.rpc.autoscaler.NodeState.dynamic_labels
	nodeStateStatus        = 8  // ray.rpc.autoscaler.NodeState.status
	nodeStateIdleMs        = 9  // ray.rpc.autoscaler.NodeState.idle_duration_ms
	nodeStateIP            = 10 // ray.rpc.autoscaler.NodeState.node_ip_address
	nodeStateActivity      = 12 // ray.rpc.autoscaler.NodeState.node_activity
	nodeStateLabels        = 13 // ray.rpc.autoscaler.NodeState.labels

	nodeStatusRunning  = 1 // ray.rpc.autoscaler.NodeStatus.RUNNING
	nodeStatusDead     = 2 // ray.rpc.autoscaler.NodeStatus.DEAD
	nodeStatusIdle     = 3 // ray.rpc.autoscaler.NodeStatus.IDLE
	nodeStatusDraining = 4 // ray.rpc.autoscaler.NodeStatus.DRAINING

	byCountRequest = 1 // ray.rpc.autoscaler.ResourceRequestByCount.request
	byCountCount   = 2 // ray.rpc.autoscaler.ResourceRequestByCount.count

	requestResources = 1 // ray.rpc.autoscaler.ResourceRequest.resources_bundle
	requestPlacement = 2 // ray.rpc.autoscaler.ResourceRequest.placement_constraints
	requestSelectors = 3 // ray.rpc.autoscaler.ResourceRequest.label_selectors

	labelSelectorConstraints = 1 // ray.rpc.LabelSelector.label_constraints

	labelConstraintKey      = 1 // ray.rpc.LabelSelectorConstraint.label_key
	labelConstraintOperator = 2 // ray.rpc.LabelSelectorConstraint.operator
	labelConstraintValues   = 3 // ray.rpc.LabelSelectorConstraint.label_values

	placementAntiAffinity = 1 // ray.rpc.autoscaler.PlacementConstraint.anti_affinity
	placementAffinity     = 2 // ray.rpc.autoscaler.PlacementConstraint.affinity

	affinityLabelName  = 1 // ray.rpc.autoscaler.AntiAffinityConstraint.label_name, ray.rpc.autoscaler.AffinityConstraint.label_name
	affinityLabelValue = 2 // ray.rpc.autoscaler.AntiAffinityConstraint.label_value, ray.rpc.autoscaler.AffinityConstraint.label_value

	gangRequests  = 1 // ray.rpc.autoscaler.GangResourceRequest.requests
	gangDetails   = 2 // ray.rpc.autoscaler.GangResourceRequest.details
	gangSelectors = 3 // ray.rpc.autoscaler.GangResourceRequest.bundle_selectors

	selectorRequests = 1 // ray.rpc.autoscaler.BundleSelector.resource_requests

	// Every map<K, V> field is a list of entries {key = 1, value = 2}.
	mapEntryKey   = 1 // ray.rpc.autoscaler.NodeState.TotalResourcesEntry.key, ray.rpc.autoscaler.NodeState.LabelsEntry.key
	mapEntryValue = 2 // ray.rpc.autoscaler.NodeState.TotalResourcesEntry.value, ray.rpc.autoscaler.NodeState.LabelsEntry.value

	drainRequestNodeID     = 1 // ray.rpc.autoscaler.DrainNodeRequest.node_id
	drainRequestReason     = 2 // ray.rpc.autoscaler.DrainNodeRequest.reason
	drainRequestMessage    = 3 // ray.rpc.autoscaler.DrainNodeRequest.reason_message
	drainRequestDeadlineMs = 4 // ray.rpc.autoscaler.DrainNodeRequest.deadline_timestamp_ms

	drainReplyAccepted  = 1 // ray.rpc.autoscaler.DrainNodeReply.is_accepted
	drainReplyRejection = 2 // ray.rpc.autoscaler.DrainNodeReply.rejection_reason_message

	kvGetRequestKey       = 1 // ray.rpc.InternalKVGetRequest.key
	kvGetRequestNamespace = 2 // ray.rpc.InternalKVGetRequest.namespace

	kvGetReplyStatus = 1 // ray.rpc.InternalKVGetReply.status
	kvGetReplyValue  = 2 // ray.rpc.InternalKVGetReply.value

	gcsStatusCode    = 1 // ray.rpc.GcsStatus.code
	gcsStatusMessage = 2 // ray.rpc.GcsStatus.message
)
