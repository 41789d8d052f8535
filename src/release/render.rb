# frozen_string_literal: true

# render.rb renders BOSH job templates the way the director does, so the Go
# tests in this directory can check every template of every job without a
# director. Only Ruby's standard library is used (ERB, JSON, YAML).
#
# Usage: ruby render.rb INPUT.json
#        ruby render.rb --specs RELEASE_DIR   (job and package specs as JSON)
#        ruby render.rb --yaml FILE           (a YAML file as JSON)
#
# INPUT.json:
#   {
#     "release_dir": "/path/to/release",          # holds jobs/<job>/{spec,monit,templates/}
#     "out_dir": "/tmp/out",                      # rendered files go to <out_dir>/<ig>/<job>/<dest>
#     "deployment": {
#       "name": "cf",
#       "instance_groups": [
#         {"name": "diego-cell",
#          "instances": [{"index": 0, "id": "uuid", "az": "z1", "bootstrap": true,
#                         "networks": {"default": {"ip": "10.0.16.5", "default": ["dns", "gateway"]}}}],
#          "jobs": [{"name": "silk-daemon", "properties": {...},
#                    "consumes": {"vpa": null}}]}          # null blocks an (optional) link
#       ],
#       "external_links": {"<link type>": {"properties": {...}, "address": "...",
#                                          "instances": [{"address": "...", ...}]}}
#     },
#     "render": [{"instance_group": "diego-cell", "job": "silk-daemon"}]   # omitted: every job
#   }
#
# What the director does and this does too:
#   - a job sees only the properties its spec declares: the manifest value when
#     set, else the spec default (undeclared manifest properties are dropped);
#   - p(name[, default]) with dotted names and a list of names, if_p(...) {..}.else {..};
#   - links are resolved by type among the deployment's jobs (ambiguity and a
#     missing non-optional link are errors), else from external_links; link
#     properties are the provider's resolved properties, restricted to the list
#     its spec provides; link(...).p/if_p/instances/address, if_link(...) {..}.else {..};
#   - spec: name, id, index, az, bootstrap, deployment, ip, address, networks, job.name;
#   - templates and monit are ERB with trim mode "-".
#
# Output: <out_dir>/result.json =
#   {"rendered": [{"instance_group", "job", "template", "dest", "path", "yaml"?, "yaml_error"?}],
#    "errors": [{"instance_group", "job", "template", "message"}]}
# where "yaml" is the parsed content of every *.yml destination.

require 'erb'
require 'fileutils'
require 'json'
require 'ostruct'
require 'yaml'

# UnknownProperty is what p raises for a property with no value and no default.
class UnknownProperty < StandardError
  def initialize(names)
    super("Can't find property '#{names.inspect}'")
  end
end

# RenderError is a deployment that cannot be rendered (links, bad input).
class RenderError < StandardError; end

# lookup walks a nested hash along a dotted name; nil when any step is missing.
def lookup(hash, name)
  name.to_s.split('.').reduce(hash) do |node, key|
    return nil unless node.is_a?(Hash) && node.key?(key)

    node[key]
  end
end

def set_nested(hash, name, value)
  keys = name.split('.')
  last = keys.pop
  node = keys.reduce(hash) { |h, k| h[k] = {} unless h[k].is_a?(Hash); h[k] }
  node[last] = value
end

def deep_copy(value)
  Marshal.load(Marshal.dump(value))
end

def to_ostruct(value)
  case value
  when Hash then OpenStruct.new(value.transform_values { |v| to_ostruct(v) })
  when Array then value.map { |v| to_ostruct(v) }
  else value
  end
end

# ElseBlock lets if_p / if_link be followed by .else { ... }.
class ActiveElseBlock
  def else; end

  def else_if_p(*_names); self; end
end

class InactiveElseBlock
  def initialize(context = nil)
    @context = context
  end

  def else
    yield
  end

  def else_if_p(*names, &block)
    @context.if_p(*names, &block)
  end
end

# PropertyLookup holds p/if_p over a resolved property hash.
module PropertyLookup
  def p(*args)
    names = Array(args[0])
    names.each do |name|
      value = lookup(@properties, name)
      return value unless value.nil?
    end
    return args[1] if args.length == 2

    raise UnknownProperty, names
  end

  def if_p(*names)
    values = names.map { |name| lookup(@properties, name) }
    return InactiveElseBlock.new(self) if values.any?(&:nil?)

    yield(*values)
    ActiveElseBlock.new
  end
end

LinkInstance = Struct.new(:name, :index, :id, :az, :address, :bootstrap, keyword_init: true)

# EvaluationLink is what link(name) returns.
class EvaluationLink
  include PropertyLookup
  attr_reader :instances, :address

  def initialize(properties, instances, address)
    @properties = properties
    @instances = instances
    @address = address
  end
end

# Context is the binding a template is evaluated in: one per template, as in
# BOSH, so helper methods a template defines do not leak into the next.
class Context
  include PropertyLookup
  attr_reader :spec

  def initialize(properties, spec, links)
    @properties = properties
    @spec = spec
    @links = links
  end

  def link(name)
    @links.fetch(name) { raise RenderError, "Can't find link '#{name}'" }
  end

  def if_link(name)
    return InactiveElseBlock.new unless @links.key?(name)

    yield @links[name]
    ActiveElseBlock.new
  end

  def get_binding
    binding
  end
end

# Renderer resolves properties and links for a deployment and renders jobs.
class Renderer
  def initialize(input)
    @release_dir = input.fetch('release_dir')
    @out_dir = input.fetch('out_dir')
    @deployment = input.fetch('deployment')
    @external = @deployment.fetch('external_links', {}) || {}
    @specs = {}
  end

  def job_spec(name)
    @specs[name] ||= begin
      path = File.join(@release_dir, 'jobs', name, 'spec')
      raise RenderError, "no job '#{name}' in #{@release_dir}/jobs" unless File.file?(path)

      YAML.safe_load(File.read(path), aliases: true) || {}
    end
  end

  def instance_groups
    @deployment.fetch('instance_groups')
  end

  # resolved_properties is what the director hands a job: every declared
  # property, from the manifest when set there, else from the spec default.
  def resolved_properties(job)
    spec = job_spec(job['name'])
    manifest = job['properties'] || {}
    resolved = {}
    (spec['properties'] || {}).each do |name, decl|
      value = lookup(manifest, name)
      value = deep_copy((decl || {})['default']) if value.nil?
      set_nested(resolved, name, value) unless value.nil?
    end
    resolved
  end

  def providers_of(type)
    found = []
    instance_groups.each do |ig|
      (ig['jobs'] || []).each do |job|
        (job_spec(job['name'])['provides'] || []).each do |provided|
          found << [ig, job, provided] if provided['type'] == type
        end
      end
    end
    found
  end

  def provider_by_name(link_name)
    instance_groups.each do |ig|
      (ig['jobs'] || []).each do |job|
        (job_spec(job['name'])['provides'] || []).each do |provided|
          return [ig, job, provided] if provided['name'] == link_name
        end
      end
    end
    nil
  end

  def link_from_provider(ig, job, provided)
    all = resolved_properties(job)
    props = {}
    (provided['properties'] || []).each do |name|
      value = lookup(all, name)
      set_nested(props, name, value) unless value.nil?
    end
    instances = ig['instances'].map do |inst|
      LinkInstance.new(name: ig['name'], index: inst['index'], id: inst['id'], az: inst['az'],
                       address: default_ip(inst), bootstrap: inst['bootstrap'])
    end
    network = ig['instances'].first['networks'].keys.first
    EvaluationLink.new(props, instances, "q-s0.#{ig['name']}.#{network}.#{@deployment['name']}.bosh")
  end

  def external_link(data)
    instances = (data['instances'] || []).map do |inst|
      LinkInstance.new(name: inst['name'], index: inst['index'], id: inst['id'], az: inst['az'],
                       address: inst['address'], bootstrap: inst['bootstrap'])
    end
    EvaluationLink.new(data['properties'] || {}, instances, data['address'])
  end

  def resolve_links(ig, job)
    links = {}
    manifest_consumes = job['consumes'] || {}
    (job_spec(job['name'])['consumes'] || []).each do |consumed|
      name = consumed['name']
      type = consumed['type']
      if manifest_consumes.key?(name) && manifest_consumes[name].nil?
        next if consumed['optional']

        raise RenderError, "Link '#{name}' of job '#{job['name']}' is not optional and cannot be blocked"
      end
      from = (manifest_consumes[name] || {})['from']
      if from
        provider = provider_by_name(from)
        raise RenderError, "Can't resolve link '#{name}' from '#{from}' for job '#{job['name']}'" unless provider

        links[name] = link_from_provider(*provider)
        next
      end
      providers = providers_of(type)
      if providers.length > 1
        names = providers.map { |p_ig, p_job, _| "#{p_ig['name']}/#{p_job['name']}" }.join(', ')
        raise RenderError, "Multiple providers of link type '#{type}' for job '#{job['name']}': #{names}"
      end
      if providers.length == 1
        links[name] = link_from_provider(*providers.first)
      elsif @external.key?(type)
        links[name] = external_link(@external[type])
      elsif !consumed['optional']
        raise RenderError, "Failed to resolve link '#{name}' with type '#{type}' from job '#{job['name']}' " \
                           "in instance group '#{ig['name']}'"
      end
    end
    links
  end

  def default_ip(instance)
    nets = instance['networks']
    default = nets.values.find { |n| Array(n['default']).include?('gateway') } || nets.values.first
    default['ip']
  end

  def instance_spec(ig, job, instance)
    ip = default_ip(instance)
    to_ostruct(
      'name' => ig['name'],
      'id' => instance['id'],
      'index' => instance['index'],
      'az' => instance['az'],
      'bootstrap' => instance['bootstrap'] ? true : false,
      'deployment' => @deployment['name'],
      'ip' => ip,
      'address' => ip,
      'networks' => instance['networks'],
      'job' => { 'name' => job['name'] },
      'release' => { 'name' => 'netman', 'version' => 'dev' }
    )
  end

  def render_template(context, source, template)
    erb = ERB.new(source, trim_mode: '-')
    erb.filename = template
    erb.result(context.get_binding)
  rescue StandardError, ScriptError => e
    line = (e.backtrace || []).map { |l| l[/\A#{Regexp.escape(template)}:(\d+)/, 1] }.compact.first
    where = line ? "line #{line}: " : ''
    raise RenderError, "Error filling in template '#{template}' (#{where}#{e.message})"
  end

  def render_job(ig, job, result)
    spec = job_spec(job['name'])
    job_dir = File.join(@release_dir, 'jobs', job['name'])
    base = { 'instance_group' => ig['name'], 'job' => job['name'] }
    begin
      properties = resolved_properties(job)
      links = resolve_links(ig, job)
    rescue RenderError => e
      result['errors'] << base.merge('template' => '', 'message' => e.message)
      return
    end
    instance = ig['instances'].first
    templates = (spec['templates'] || {}).to_a + [%w[monit monit]]
    templates.each do |template, dest|
      source_path = template == 'monit' ? File.join(job_dir, 'monit') : File.join(job_dir, 'templates', template)
      entry = base.merge('template' => template, 'dest' => dest)
      begin
        raise RenderError, "template #{source_path} does not exist" unless File.file?(source_path)

        context = Context.new(properties, instance_spec(ig, job, instance), links)
        text = render_template(context, File.read(source_path), template)
      rescue RenderError => e
        result['errors'] << entry.merge('message' => e.message)
        next
      end
      path = File.join(@out_dir, ig['name'], job['name'], dest)
      FileUtils.mkdir_p(File.dirname(path))
      File.write(path, text)
      entry['path'] = path
      if dest.end_with?('.yml', '.yaml')
        begin
          entry['yaml'] = YAML.safe_load(text, aliases: false) || {}
        rescue Psych::Exception => e
          entry['yaml_error'] = e.message
        end
      end
      result['rendered'] << entry
    end
  end

  def run(targets)
    result = { 'rendered' => [], 'errors' => [] }
    instance_groups.each do |ig|
      (ig['jobs'] || []).each do |job|
        next if targets && targets.none? { |t| t['instance_group'] == ig['name'] && t['job'] == job['name'] }

        render_job(ig, job, result)
      end
    end
    FileUtils.mkdir_p(@out_dir)
    File.write(File.join(@out_dir, 'result.json'), JSON.pretty_generate(result))
  end
end

# specs prints every job and package spec of a release directory as JSON.
def specs(release_dir)
  out = { 'jobs' => {}, 'packages' => {} }
  { 'jobs' => 'spec', 'packages' => 'spec' }.each do |kind, file|
    Dir.glob(File.join(release_dir, kind, '*', file)).sort.each do |path|
      name = File.basename(File.dirname(path))
      begin
        out[kind][name] = YAML.safe_load(File.read(path), aliases: true) || {}
      rescue Psych::Exception => e
        abort "render.rb: #{path}: #{e.message}"
      end
    end
  end
  puts JSON.generate(out)
end

if $PROGRAM_NAME == __FILE__
  if ARGV.length == 2 && ARGV[0] == '--specs'
    specs(ARGV[1])
    exit 0
  end
  if ARGV.length == 2 && ARGV[0] == '--yaml'
    begin
      puts JSON.generate(YAML.safe_load(File.read(ARGV[1]), aliases: true))
    rescue Psych::Exception, SystemCallError => e
      abort "render.rb: #{ARGV[1]}: #{e.message}"
    end
    exit 0
  end
  abort 'usage: ruby render.rb INPUT.json | --specs RELEASE_DIR | --yaml FILE' unless ARGV.length == 1
  input = JSON.parse(File.read(ARGV[0]))
  begin
    Renderer.new(input).run(input['render'])
  rescue RenderError, KeyError => e
    abort "render.rb: #{e.message}"
  end
end
