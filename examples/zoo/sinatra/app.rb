# A recording Sinatra (Rack) app for tok's framework zoo.
#
# Every request, whatever its method and path, is answered with JSON holding
# everything Rack and Sinatra parsed: params (query, form and multipart
# merged, with file contents), Rack's GET and POST, the body read with
# JSON.parse whatever its Content-Type (leniently: Ruby's parser skips
# /* */ comments, and NaN is allowed), headers, cookies, path and method.
# Rack::MethodOverride is on, as in Rails and classic Sinatra apps. The zoo
# test searches the answer for card numbers.
#
#   PORT=5004 ruby app.rb       # on Puma, as Rails and Sinatra deploy; 127.0.0.1 only

require 'json'
require 'sinatra/base'

class Recorder < Sinatra::Base
  set :method_override, true
  set :show_exceptions, false
  set :raise_errors, false
  set :protection, false # the answer is the point; no CSRF or path checks

  # Tells the zoo test the app answered (not tok, nor Puma).
  before { headers 'X-Zoo-App' => 'sinatra' }

  def plain(v)
    case v
    when Hash
      if v[:tempfile] || v['tempfile']
        f = v[:tempfile] || v['tempfile']
        f.rewind
        { 'filename' => v[:filename] || v['filename'], 'type' => v[:type] || v['type'],
          'content' => f.read.force_encoding('UTF-8').scrub }
      else
        v.to_h { |k, x| [k.to_s.dup.force_encoding('UTF-8').scrub, plain(x)] }
      end
    when Array then v.map { |x| plain(x) }
    when String then v.dup.force_encoding('UTF-8').scrub
    else v
    end
  end

  def body_json
    request.body.rewind
    raw = request.body.read
    request.body.rewind
    return nil if raw.nil? || raw.empty?

    JSON.parse(raw, allow_nan: true, max_nesting: false)
  rescue JSON::ParserError, EncodingError
    nil
  end

  def record
    form = begin
      plain(request.POST)
    rescue StandardError => e
      { 'error' => e.class.name }
    end
    headers = env.select { |k, _| k.start_with?('HTTP_') || %w[CONTENT_TYPE CONTENT_LENGTH].include?(k) }
    content_type :json
    answer = {
      'framework' => 'sinatra',
      'method' => request.request_method,
      'original_method' => env['rack.methodoverride.original_method'],
      'path' => request.path_info,
      'script_name' => request.script_name,
      'query_string' => request.query_string,
      'params' => plain(params),
      'get' => plain(request.GET),
      'post' => form,
      'json' => body_json,
      'headers' => plain(headers),
      'cookies' => plain(request.cookies)
    }
    JSON.generate(answer, allow_nan: true)
  end

  %w[get post put patch delete options].each do |verb|
    send(verb, '*') { record }
  end

  error do
    headers 'X-Zoo-App' => 'sinatra'
    content_type :json
    status 500
    JSON.generate('framework' => 'sinatra', 'error' => env['sinatra.error'].class.name)
  end
end

port = Integer(ARGV[0] || ENV['PORT'] || 5004)
Recorder.run!(bind: '127.0.0.1', port: port, server: 'puma', quiet: true)
