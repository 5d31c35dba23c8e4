import React, { ChangeEvent } from 'react';
import { DataSourceInstanceSettings, DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { DataSourcePicker } from '@grafana/runtime';
import { InlineField, Input, SecretInput, Stack } from '@grafana/ui';

import { WebbOptions, WebbSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<WebbOptions, WebbSecureOptions>;

const LABEL = 20;

/** What is wrong with a relay URL, or undefined. */
export function relayUrlProblem(url: string | undefined): string | undefined {
  const u = (url ?? '').trim();
  if (u === '') {
    return 'Relay URL is required: the relay HTTP port, e.g. http://webb-relay:9965';
  }
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    return `Relay URL "${u}" is not a URL (expected e.g. http://webb-relay:9965)`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return `Relay URL "${u}" must start with http:// or https://`;
  }
  if (parsed.pathname !== '/' || parsed.search) {
    return `Relay URL "${u}" must be the relay itself, without a path (the plugin adds /api/v1/…)`;
  }
  return undefined;
}

export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields, secureJsonData } = options;
  const urlProblem = relayUrlProblem(jsonData.relayUrl);

  const onUrl = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, jsonData: { ...jsonData, relayUrl: e.currentTarget.value } });
  const onToken = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, apiToken: e.currentTarget.value } });
  const onResetToken = () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, apiToken: false },
      secureJsonData: { ...secureJsonData, apiToken: '' },
    });
  const onTempo = (ds?: DataSourceInstanceSettings) =>
    onOptionsChange({
      ...options,
      jsonData: { ...jsonData, tempoDatasourceUid: ds?.uid, tempoDatasourceName: ds?.name },
    });

  return (
    <Stack direction="column" gap={1}>
      <InlineField
        label="Relay URL"
        labelWidth={LABEL}
        tooltip="The relay's HTTP port (--http-listen). Grafana's server calls it; browsers never do."
        invalid={!!urlProblem}
        error={urlProblem}
      >
        <Input
          id="webb-relay-url"
          aria-label="Relay URL"
          value={jsonData.relayUrl ?? ''}
          placeholder="http://webb-relay:9965"
          width={48}
          onChange={onUrl}
        />
      </InlineField>
      <InlineField
        label="API token"
        labelWidth={LABEL}
        tooltip="The relay's --api-token. Stored encrypted; Grafana's proxy adds it as a bearer token."
      >
        <SecretInput
          id="webb-api-token"
          aria-label="API token"
          isConfigured={!!secureJsonFields?.apiToken}
          value={secureJsonData?.apiToken ?? ''}
          placeholder="none (the relay was started without --api-token)"
          width={48}
          onReset={onResetToken}
          onChange={onToken}
        />
      </InlineField>
      <InlineField
        label="Tempo data source"
        labelWidth={LABEL}
        tooltip="Trace IDs in the flows table link to traces in this Tempo data source"
      >
        <DataSourcePicker
          pluginId="tempo"
          current={jsonData.tempoDatasourceUid ?? null}
          noDefault
          width={48}
          placeholder="none: trace ids are not links"
          onChange={onTempo}
          onClear={() => onTempo(undefined)}
        />
      </InlineField>
    </Stack>
  );
}
