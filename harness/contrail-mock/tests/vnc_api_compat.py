"""Drive contrail-mock with the real vnc_api client library (PyPI contrail-api-client) the way
contrail-kube-manager does. Usage: python3 vnc_api_compat.py <host> <port>. Exits non-zero with
a traceback on the first mismatch; prints OK at the end."""
import sys

from vnc_api.exceptions import NoIdError, RefsExistError
from vnc_api.vnc_api import (ActionListType, ApplicationPolicySet, Domain,
                             FirewallPolicy, FirewallRule,
                             FirewallRuleEndpointType, FirewallSequence,
                             FirewallServiceType, IpamSubnets, IpamSubnetType,
                             KeyValuePair, NetworkIpam, NetworkPolicy,
                             PolicyEntriesType, PolicyRuleType, AddressType,
                             PortType, Project, SequenceType, SubnetType, Tag,
                             VirtualNetwork, VirtualNetworkPolicyType,
                             VirtualNetworkType, VncApi, VnSubnetsType)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


host, port = sys.argv[1], int(sys.argv[2])
api = VncApi(api_server_host=host, api_server_port=port, auth_type='noauth')

# Project with annotations (sent through /prop-collection-update, as kube-manager does).
proj = Project('k8s-compat', parent_obj=Domain())
proj.add_annotations(KeyValuePair(key='namespace', value='compat'))
api.project_create(proj)
proj = api.project_read(fq_name=['default-domain', 'k8s-compat'])
check(proj.get_annotations().key_value_pair[0].key == 'namespace', 'annotations')

# Flat-subnet IPAM and a network on it.
ipam = NetworkIpam('compat-pod-ipam', parent_obj=proj,
                   ipam_subnet_method='flat-subnet',
                   ipam_subnets=IpamSubnets([IpamSubnetType(subnet=SubnetType('10.32.0.0', 12))]))
api.network_ipam_create(ipam)
vn = VirtualNetwork('compat-pod-network', parent_obj=proj,
                    address_allocation_mode='flat-subnet-only')
vn.set_virtual_network_properties(VirtualNetworkType(forwarding_mode='l3'))
vn.add_network_ipam(ipam, VnSubnetsType([]))
api.virtual_network_create(vn)
vn_read = api.virtual_network_read(id=vn.uuid)
refs = vn_read.get_network_ipam_refs()
check(refs[0]['to'] == ipam.get_fq_name(), 'ipam ref target')
check(refs[0]['attr'].ipam_subnets[0].subnet_uuid, 'flat subnet uuid filled')
check(vn_read.get_perms2().share == [], 'perms2.share')
check(vn_read.get_virtual_network_properties().forwarding_mode == 'l3', 'forwarding mode')

# A user-defined subnet gets its gateway.
ipam2 = NetworkIpam('compat-user-ipam', parent_obj=proj)
api.network_ipam_create(ipam2)
vn2 = VirtualNetwork('compat-user-network', parent_obj=proj)
vn2.add_network_ipam(ipam2, VnSubnetsType([IpamSubnetType(subnet=SubnetType('10.1.0.0', 24))]))
api.virtual_network_create(vn2)
vn2_read = api.virtual_network_read(fq_name=vn2.get_fq_name())
subnet = vn2_read.get_network_ipam_refs()[0]['attr'].ipam_subnets[0]
check(subnet.default_gateway == '10.1.0.1', 'default gateway')

# Network policy attached with a sequence, then relaxed for delete.
np = NetworkPolicy('compat-np', parent_obj=proj,
                   network_policy_entries=PolicyEntriesType([PolicyRuleType(
                       direction='<>', protocol='any',
                       action_list=ActionListType(simple_action='pass'),
                       src_addresses=[AddressType(virtual_network=vn.get_fq_name_str())],
                       src_ports=[PortType(-1, -1)],
                       dst_addresses=[AddressType(virtual_network=vn2.get_fq_name_str())],
                       dst_ports=[PortType(-1, -1)])]))
api.network_policy_create(np)
vn_read.add_network_policy(np, VirtualNetworkPolicyType(sequence=SequenceType(0, 0)))
api.virtual_network_update(vn_read)
api.ref_relax_for_delete(vn.uuid, np.uuid)
vn_read = api.virtual_network_read(id=vn.uuid)
check(vn_read.get_network_policy_refs()[0]['attr'].sequence.major == 0, 'policy sequence')

# Property update.
vn_read.set_fabric_snat(True)
api.virtual_network_update(vn_read)
check(api.virtual_network_read(id=vn.uuid).get_fabric_snat() is True, 'fabric_snat')

# Tags: created global, set with set_tag / set_tags.
tag = Tag(name='application=compat', tag_type_name='application', tag_value='compat')
api.tag_create(tag)
tag = api.tag_read(fq_name=['application=compat'])
check(tag.tag_id.startswith('0x0001'), 'application tag id ' + tag.tag_id)
api.set_tag(vn_read, 'application', 'compat', is_global=True)
api.set_tags(vn2_read, {'application': {'is_global': True, 'value': 'compat'}})
vn_read = api.virtual_network_read(id=vn.uuid)
check([r['to'] for r in vn_read.get_tag_refs()] == [['application=compat']], 'tag_refs')
label = Tag(name='Label=Web', tag_type_name='Label', tag_value='Web')
api.tag_create(label)
check(api.tag_read(id=label.uuid).get_fq_name() == ['label=Web'], 'tag type lower-cased')

# Firewall rule, policy and APS under the global policy management.
pm = api.policy_management_read(fq_name=['default-policy-management'])
rule = FirewallRule('compat-rule', parent_obj=pm,
                    action_list=ActionListType(simple_action='pass'),
                    service=FirewallServiceType(protocol='tcp', dst_ports=PortType(80, 80)),
                    endpoint_1=FirewallRuleEndpointType(any=True),
                    endpoint_2=FirewallRuleEndpointType(tags=['application=compat']),
                    direction='>')
api.firewall_rule_create(rule)
policy = FirewallPolicy('compat-fp', parent_obj=pm)
policy.add_firewall_rule(rule, FirewallSequence(sequence='00000.0'))
api.firewall_policy_create(policy)
aps = ApplicationPolicySet('compat-aps', parent_obj=pm)
aps.add_firewall_policy(policy, FirewallSequence(sequence='00001.0'))
api.application_policy_set_create(aps)
rule_read = api.firewall_rule_read(id=rule.uuid)
check(rule_read.get_match_tag_types().get_tag_type() == [1], 'match_tag_types')
check(rule_read.get_service().protocol_id == 6, 'protocol_id')
check(rule_read.get_endpoint_2().tag_ids == [int(tag.tag_id, 16)], 'tag_ids')
check(rule_read.get_tag_refs()[0]['uuid'] == tag.uuid, 'rule tag_refs')
policy_read = api.firewall_policy_read(id=policy.uuid)
check(policy_read.get_firewall_rule_refs()[0]['attr'].sequence == '00000.0', 'rule sequence')
aps_read = api.application_policy_set_read(fq_name=aps.get_fq_name())
check(aps_read.get_firewall_policy_refs()[0]['uuid'] == policy.uuid, 'aps refs')

# Lists and lookups.
listed = api.virtual_networks_list(parent_id=proj.uuid)
check(len(listed['virtual-networks']) == 2, 'list by parent')
detailed = api.virtual_networks_list(parent_id=proj.uuid, detail=True)
check(sorted(o.name for o in detailed) == ['compat-pod-network', 'compat-user-network'], 'detail')
check(len(api.virtual_networks_list(back_ref_id=ipam.uuid)['virtual-networks']) == 1, 'back_ref_id')
with_field = api.virtual_networks_list(obj_uuids=[vn.uuid], fields=['fabric_snat'])
check(with_field['virtual-networks'][0]['fabric_snat'] is True, 'fields')
check(api.fq_name_to_id('virtual-network', vn.get_fq_name()) == vn.uuid, 'fq_name_to_id')
check(api.id_to_fq_name(vn.uuid) == vn.get_fq_name(), 'id_to_fq_name')
try:
    api.fq_name_to_id('virtual-network', ['default-domain', 'nope', 'x'])
    raise AssertionError('a missing name must raise')
except NoIdError:
    pass
ip_fabric = api.virtual_network_read(fq_name=['default-domain', 'default-project', 'ip-fabric'])
check(ip_fabric.get_is_provider_network() is True, 'ip-fabric default VN')
api.global_vrouter_config_read(fq_name=['default-global-system-config',
                                        'default-global-vrouter-config'])

# Errors map to the library's exceptions.
try:
    api.network_ipam_delete(id=ipam.uuid)
    raise AssertionError('deleting a referenced ipam must fail')
except RefsExistError:
    pass
try:
    api.virtual_network_read(id='6b1a7a64-0000-4000-8000-000000000000')
    raise AssertionError('reading a missing network must fail')
except NoIdError:
    pass

# Delete everything in dependency order.
api.application_policy_set_delete(id=aps.uuid)
api.firewall_policy_delete(id=policy.uuid)
api.firewall_rule_delete(id=rule.uuid)
api.network_policy_delete(id=np.uuid)  # relaxed: allowed while still referenced
api.virtual_network_delete(id=vn.uuid)
api.virtual_network_delete(id=vn2.uuid)
api.tag_delete(id=tag.uuid)
api.tag_delete(id=label.uuid)
api.network_ipam_delete(id=ipam.uuid)
api.network_ipam_delete(id=ipam2.uuid)
api.project_delete(id=proj.uuid)
print('OK')
